"""``python -m zg_asktell demo``: fit hard-edged discs to a target image.

ZeroGrads, its plain-ES ablation and a classic derivative-free peer (Nevergrad's CMA,
when Nevergrad is installed) get the same evaluation budget and batch size; the demo
prints a table and writes a PNG of the images and loss curves.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import ZeroGrads, preset
from .problems import DiscRaster, FloatArray


@dataclass
class DemoResult:
    name: str
    x: FloatArray
    loss: float
    seconds: float
    curve: list[float]  # best loss after each batch


def _progress(total: int, label: str) -> Callable[[int, float], None]:
    from tqdm import tqdm

    bar = tqdm(total=total, desc=f"{label:>10}", unit="eval", leave=True)

    def update(n: int, best: float) -> None:
        bar.update(n)
        bar.set_postfix(best=f"{best:.5f}")
        if bar.n >= total:
            bar.close()

    return update


def run_zerograds(problem: DiscRaster, budget: int, seed: int, preset_name: str, label: str) -> DemoResult:
    opt = ZeroGrads(
        problem.x0,
        lower=problem.lower,
        upper=problem.upper,
        budget=budget,
        seed=seed,
        config=preset(preset_name),
    )
    progress, curve, start = _progress(budget, label), [], time.perf_counter()
    while opt.evaluations < budget:
        X = opt.ask(min(opt.config.batch_size, budget - opt.evaluations))
        opt.tell(X, [problem(x) for x in X])
        curve.append(opt.best_loss)
        progress(len(X), opt.best_loss)
    x = opt.recommend()
    return DemoResult(label, x, problem(x), time.perf_counter() - start, curve)


def run_nevergrad(problem: DiscRaster, budget: int, seed: int, name: str, batch_size: int) -> DemoResult:
    import nevergrad as ng

    param = ng.p.Array(init=problem.x0, lower=problem.lower, upper=problem.upper).set_mutation(sigma=0.1)
    param.random_state = np.random.RandomState(seed)
    opt = ng.optimizers.registry[name](parametrization=param, budget=budget, num_workers=batch_size)
    progress, curve, best, start = _progress(budget, name), [], np.inf, time.perf_counter()
    for _ in range(budget // batch_size):
        candidates = [opt.ask() for _ in range(batch_size)]
        for candidate in candidates:
            loss = problem(candidate.value)
            best = min(best, loss)
            opt.tell(candidate, loss)
        curve.append(best)
        progress(batch_size, best)
    x = np.asarray(opt.recommend().value, dtype=np.float64)
    return DemoResult(name, x, problem(x), time.perf_counter() - start, curve)


def write_figure(problem: DiscRaster, results: list[DemoResult], batch_size: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("target", problem.target), ("start", problem.render(problem.x0))]
    panels += [(f"{r.name}\nloss {r.loss:.4f}", problem.render(r.x)) for r in results]
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(3 * (len(panels) + 1.6), 3.2))
    for ax, (title, image) in zip(axes, panels):
        ax.imshow(np.clip(image, 0, 1), interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    curves = axes[-1]
    for r in results:
        curves.plot(batch_size * np.arange(1, len(r.curve) + 1), r.curve, label=r.name)
    curves.set(xlabel="evaluations", ylabel="best loss", yscale="log")
    curves.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(budget: int = 10000, discs: int = 40, seed: int = 0, out: str = "demo.png") -> list[DemoResult]:
    problem = DiscRaster.make(discs, seed=seed)
    batch_size = preset("default").batch_size
    print(
        f"Fitting {discs} hard-edged discs ({problem.dim} parameters) to a {problem.size}x{problem.size} "
        f"target; budget {budget} evaluations, batches of {batch_size}. Start loss {problem(problem.x0):.5f}."
    )
    results = [
        run_zerograds(problem, budget, seed, "default", "ZeroGrads"),
        run_zerograds(problem, budget, seed, "es", "ES"),
    ]
    try:
        results.append(run_nevergrad(problem, budget, seed, "CMA", batch_size))
    except ImportError:
        print("Nevergrad is not installed: skipping the CMA peer (pip install nevergrad).")
    reference = results[0].loss
    print("\n| optimizer | final loss | vs ZeroGrads | seconds |\n|---|---|---|---|")
    for r in results:
        print(f"| {r.name} | {r.loss:.5f} | {r.loss / reference:.2f}x | {r.seconds:.1f} |")
    print(
        "\nES is ZeroGrads' own ablation (same sampling, schedule and step, no surrogate);"
        " see docs/calibration.md for when each wins."
    )
    try:
        write_figure(problem, results, batch_size, Path(out))
        print(f"Wrote {out}")
    except ImportError:
        print("matplotlib is not installed: no figure written (pip install matplotlib).")
    return results
