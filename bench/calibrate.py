"""Calibration sweeps behind the core defaults (docs/calibration.md).

Preset ``surrogate`` was the library's default until the control-variate estimator; every
sweep below measured it.

``python -m bench.calibrate SWEEP [--budgets 960 3000 10000] [--seeds 2]`` runs every
(problem, preset, option change) of the sweep at each budget and prints a Markdown table of
median final losses (of ``recommend()``). Sweeps:

- ``steps``, ``surrogate-steps``: the step size ``lr`` of ES and of the surrogate
  against the budget (chose the horizon rules);
- ``surrogate``: surrogate design options at one budget;
- ``defaults``: the surrogate against its ES ablations, all with the horizon rule;
- ``recommendation``: theta, the best evaluated point, or theta until the budget is spent and
  then the best point (which includes theta, evaluated in the last batch);
- ``averaged-steps``: the step size of ``es-averaged`` (its fair tuning for docs/surrogate.md);
- ``paper``: the ``reference`` settings against the default (the control variate), the
  direct surrogate step and both ES ablations on tasks shaped like the paper's (1-D toy,
  Rosenbrock, binary display, texture, digits network);
- ``noise``: the same five on noisy objectives (Monte Carlo rendering, additive noise), and
  four of them with sigma held and a short fixed step, as the reference does;
- ``hold``: sigma held for a fraction of the budget before its anneal (as PRDPT does);
- ``loss-scale``: ES with Adam on the raw loss and a fixed step, as PRDPT does, against
  the default running loss scale and sigma-following step;
- ``high-dim-steps``: the step size at 10,000-30,000 dimensions, against the horizon rule
  with its dimension factor (``lr=None``);
- ``lander-steps``: the same on the benchmark's 20,000-variable lander, where the dimension
  factor left the default 3.4x-3.7x behind the best peers;
- ``width``: the default's surrogate width at 10,000+ dimensions, where its first layer
  sets the optimizer's time per evaluation;
- ``batch``: the default and the direct surrogate step against ES at batch sizes 16, 64
  and 256;
- ``long-budget``: the default against ES on small problems run long, where ES keeps
  converging and the control variate can stall (run with many seeds: the lander is noisy);
- ``ensemble``: the default with a mean of 3 surrogates as its control variate against the
  default and ES on the six non-differentiable problems of 1,000-3,072 dimensions;
- ``long-budget-steps``: the same at fixed steps from the horizon rule's (0.058 at
  30,000 evaluations) down to a quarter of it: how much of the gap is the step;
- ``fair-steps``: the default and ES at fixed steps around the horizon rule's on the
  six problems of 1,000-3,072 dimensions (each method's best step against the other's);
- ``designs``: surrogate options that use the model beyond one gradient (several theta
  steps per batch), and its capacity and pace, against ES at 1,000-3,072 dimensions.

``--plot PATH`` also draws the median loss against the budget, one panel per problem.
Noisy problems are scored by their noiseless ``expected`` loss.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from bench.problems import (
    AdditiveNoise,
    HardEdge1D,
    Lander,
    LedDisplay,
    MonteCarloRaster,
    Rosenbrock,
    Sphere,
    StepNetwork,
)
from zg_asktell import minimize, preset
from zg_asktell.problems import DiscRaster, IntegerProgram, PosterizedTexture, Problem, QuantizedQuadratic

PROBLEMS: dict[str, Callable[[], Problem]] = {
    "sphere-10": lambda: Sphere.make(10, seed=0),
    "quantized-quadratic-1000": lambda: QuantizedQuadratic.make(1000, seed=1),
    "posterized-texture-3072": lambda: PosterizedTexture.make(32, 32, 3, seed=1),
    "disc-raster-1002": lambda: DiscRaster.make(167, seed=1),
    "disc-raster-60": lambda: DiscRaster.make(10, seed=1),
    "lander-100": lambda: Lander.make(100, seed=0),
    "step-net-160": lambda: StepNetwork.make(160, seed=0),
    "hard-edge-1d": lambda: HardEdge1D.make(1, seed=0),
    "rosenbrock-2": lambda: Rosenbrock.make(2, seed=0),
    "led-336": lambda: LedDisplay.make(336, seed=0),
    "step-net-2410": lambda: StepNetwork.make(2410, seed=0),
    "integer-1000": lambda: IntegerProgram.make(1000, seed=1),
    "lander-1000": lambda: Lander.make(1000, seed=0),
    "quantized-quadratic-10000": lambda: QuantizedQuadratic.make(10_000, seed=1),
    "posterized-texture-12288": lambda: PosterizedTexture.make(64, 64, 3, seed=1),
    "quantized-quadratic-30000": lambda: QuantizedQuadratic.make(30_000, seed=1),
    "posterized-texture-27648": lambda: PosterizedTexture.make(96, 96, 3, seed=1),
    "lander-20000": lambda: Lander.make(20_000, seed=0),
    "mc-raster-1002-1spp": lambda: MonteCarloRaster.noisy(167, samples=1, seed=1),
    "quantized-quadratic-1000+1%noise": lambda: AdditiveNoise.around(
        QuantizedQuadratic.make(1000, seed=1), 0.01
    ),
    "quantized-quadratic-1000+10%noise": lambda: AdditiveNoise.around(
        QuantizedQuadratic.make(1000, seed=1), 0.1
    ),
}
BASE_PROBLEMS = tuple(PROBLEMS)[:7]
HIGHER_DIMENSIONAL = (
    "quantized-quadratic-10000",
    "posterized-texture-12288",
    "quantized-quadratic-30000",
    "posterized-texture-27648",
)
HIGH_DIMENSIONAL = ("quantized-quadratic-1000", "posterized-texture-3072", "disc-raster-1002")
THOUSANDS = (*HIGH_DIMENSIONAL, "integer-1000", "lander-1000", "step-net-2410")
ESTIMATORS = ("reference", "default", "surrogate", "es", "es-averaged")
MEAN: dict[str, Any] = {"recommendation": "mean"}  # on a noisy loss the best evaluation is biased by luck
Row = tuple[str, str, dict[str, Any]]
SURROGATE_VARIANTS: tuple[dict[str, Any], ...] = (
    {},
    {"lr_surrogate": 3e-3},
    {"fit_steps": 10},
    {"weight_decay": 0.0},
    {"weight_decay": 1.0},
    {"encoding_frequencies": 0},
    {"encoding_frequencies": 6},
    {"zero_init_output": False},
    {"hidden_width": 16},
    {"hidden_width": 32, "encoding_frequencies": 2},
    {"hidden_layers": 1},
)
SWEEPS: dict[str, list[Row]] = {
    "steps": [(p, "es", {"lr": lr}) for p in BASE_PROBLEMS for lr in (0.05, 0.1, 0.2, 0.4, 0.8)],
    "surrogate-steps": [
        (p, "surrogate", {"lr": lr}) for p in BASE_PROBLEMS for lr in (0.025, 0.05, 0.1, 0.2, 0.4)
    ],
    "averaged-steps": [
        (p, "es-averaged", {"lr": lr}) for p in HIGH_DIMENSIONAL for lr in (0.01, 0.02, 0.05, 0.1)
    ],
    "surrogate": [
        *[(p, "surrogate", {}) for p in BASE_PROBLEMS],
        *[("quantized-quadratic-1000", "surrogate", change) for change in SURROGATE_VARIANTS[1:]],
        *[("posterized-texture-3072", "surrogate", change) for change in SURROGATE_VARIANTS[1:]],
    ],
    "defaults": [(p, name, {}) for p in BASE_PROBLEMS for name in ("surrogate", "es", "es-averaged")],
    "recommendation": [
        (p, name, {"recommendation": choice})
        for p in BASE_PROBLEMS
        for name in ("surrogate", "es")
        for choice in ("mean", "best", "auto")
    ],
    "paper": [
        (p, name, {})
        for p in ("hard-edge-1d", "rosenbrock-2", "led-336", "posterized-texture-3072", "step-net-2410")
        for name in ESTIMATORS
    ],
    "noise": [
        (p, name, change)
        for p in (
            "mc-raster-1002-1spp",
            "quantized-quadratic-1000+1%noise",
            "quantized-quadratic-1000+10%noise",
        )
        for name, change in (
            *[(name, MEAN) for name in ESTIMATORS],
            *[(name, {**MEAN, "sigma_final": 1.0, "lr": 0.01}) for name in ESTIMATORS[1:]],
        )
    ],
    "designs": [
        (p, name, change)
        for p in HIGH_DIMENSIONAL
        for name, change in (
            ("es", {}),
            ("surrogate", {}),
            ("surrogate", {"theta_steps": 3}),
            ("surrogate", {"theta_steps": 3, "fit_steps": 10}),
            ("surrogate", {"hidden_width": 128}),
            ("surrogate", {"lr_surrogate": 3e-4}),
            ("surrogate", {"lr": 0.03}),
        )
    ],
    "hold": [
        (p, name, {"sigma_hold": hold})
        for p in (*HIGH_DIMENSIONAL, "lander-100", "step-net-2410")
        for name in ("surrogate", "es")
        for hold in (0.0, 0.25, 0.5)
    ],
    "loss-scale": [
        (p, "es", change)
        for p in (*HIGH_DIMENSIONAL, "integer-1000", "lander-1000", "step-net-2410")
        for change in (
            {},
            {"loss_scale": "first", "step_follows_sigma": False, "lr": 0.1},
            {"loss_scale": "first", "step_follows_sigma": False, "lr": 0.05},
        )
    ],
    "high-dim-steps": [
        (p, name, change)
        for p in HIGHER_DIMENSIONAL
        for name, change in (
            *[("es", {"lr": lr}) for lr in (0.01, 0.02, 0.05, 0.1, 0.2)],
            ("es", {}),
            ("default", {}),
        )
    ],
    "lander-steps": [
        ("lander-20000", name, change)
        for name, change in (
            *[("es", {"lr": lr}) for lr in (0.02, 0.05, 0.1, 0.2, 0.4)],
            ("es", {}),
            ("default", {}),
        )
    ],
    "width": [
        (p, name, change)
        for p in HIGHER_DIMENSIONAL[:2]
        for name, change in (
            ("es", {}),
            *[("default", {"hidden_width": width}) for width in (64, 32, 16)],
        )
    ],
    "long-budget": [
        (p, name, {}) for p in ("sphere-10", "rosenbrock-2", "lander-100") for name in ("default", "es")
    ],
    "ensemble": [
        (p, name, change)
        for p in THOUSANDS
        for name, change in (("default", {"ensemble_size": 3}), ("default", {}), ("es", {}))
    ],
    "long-budget-steps": [
        (p, name, {"lr": lr})
        for p in ("sphere-10", "rosenbrock-2", "lander-100")
        for name in ("default", "es")
        for lr in (0.06, 0.03, 0.015)
    ],
    "fair-steps": [
        (p, name, {"lr": lr})
        for p in THOUSANDS
        for name in ("default", "es")
        for lr in (0.06, 0.1, 0.18, 0.3)
    ],
    "batch": [
        (p, name, {"batch_size": size})
        for p in HIGH_DIMENSIONAL
        for name in ("default", "surrogate", "es")
        for size in (16, 64, 256)
    ],
}


def run(problem_name: str, preset_name: str, changes: dict[str, Any], budget: int, seed: int) -> float:
    import torch

    torch.set_num_threads(1)
    problem = PROBLEMS[problem_name]()
    result = minimize(
        problem,
        problem.x0,
        lower=problem.lower,
        upper=problem.upper,
        budget=budget,
        seed=seed,
        config=preset(preset_name, **changes),
        progress=False,
    )
    return noiseless(problem)(result.x)


def _label(preset_name: str, changes: dict[str, Any]) -> str:
    return preset_name + "".join(f" {k}={v}" for k, v in changes.items())


def table(sweep: str, budgets: list[int], medians: np.ndarray, seeds: int) -> str:
    """Markdown: one row per (problem, preset, change), median loss per budget and its ratio
    to preset ``es`` with the same change (or, where the sweep has none, with no change)."""
    rows = SWEEPS[sweep]
    es_rows = {(p, str(c)): i for i, (p, n, c) in enumerate(rows) if n == "es"}
    problems = {p: PROBLEMS[p]() for p in dict.fromkeys(r[0] for r in rows)}
    starts = {p: noiseless(problem)(problem.x0) for p, problem in problems.items()}
    lines = [
        f"`python -m bench.calibrate {sweep} --budgets {' '.join(map(str, budgets))} --seeds {seeds}`: "
        f"median final loss over {seeds} seeds (in brackets: ratio to preset `es` with the same "
        "change, or with none)\n",
        "| problem (start loss) | preset | change | " + " | ".join(f"budget {b}" for b in budgets) + " |",
        "|---|---|---|" + "---|" * len(budgets),
    ]
    for i, (problem_name, preset_name, changes) in enumerate(rows):
        es = es_rows.get((problem_name, str(changes)), es_rows.get((problem_name, "{}")))
        cells = [
            f"{medians[i, j]:.4g}"
            + ("" if es in (None, i) else f" ({_ratio(medians[i, j], medians[es, j])})")
            for j in range(len(budgets))
        ]
        start = starts[problem_name]
        lines.append(
            f"| {problem_name} ({start:.3g}) | {preset_name} | {changes or '-'} | {' | '.join(cells)} |"
        )
    return "\n".join(lines)


def _ratio(value: float, es: float) -> str:
    if es > 0:
        return f"{value / es:.2f}x"
    return "both 0" if value == 0 else "ES reached 0"


def plot(sweep: str, budgets: list[int], medians: np.ndarray, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = SWEEPS[sweep]
    problems = list(dict.fromkeys(r[0] for r in rows))
    figure, axes = plt.subplots(
        1,
        len(problems),
        figsize=(max(7.2, 3.6 * len(problems)), 3.4 + 0.2 * (len(budgets) > 1) * len(rows) / len(problems)),
        squeeze=False,
    )
    for ax, problem_name in zip(axes[0], problems):
        mine = [i for i, row in enumerate(rows) if row[0] == problem_name]
        labels = [_label(*rows[i][1:]) for i in mine]
        if len(budgets) == 1:  # one budget: a bar per variant
            ax.barh(labels, medians[mine, 0], color=[f"C{k}" for k in range(len(mine))])
            ax.invert_yaxis()
            ax.tick_params(axis="y", labelsize=7)
            ax.set_xlabel(f"median loss at {budgets[0]} evaluations", fontsize=8)
        else:
            for k, i in enumerate(mine):
                ax.plot(budgets, medians[i], marker="o", color=f"C{k}", label=labels[k])
            positive = medians[mine][medians[mine] > 0]
            ax.set_yscale("symlog", linthresh=float(positive.min()) / 2 if positive.size else 1e-9)
            ax.set_xscale("log")
            ax.set_xticks(budgets, [str(b) for b in budgets], minor=False)
            ax.minorticks_off()
            ax.set_xlabel("evaluations")
        ax.set_title(problem_name, fontsize=9)
    legend_rows = 0
    if len(budgets) > 1:
        axes[0, 0].set_ylabel("median final loss (0 at the bottom)")
        handles, labels = axes[0, 0].get_legend_handles_labels()
        legend_rows = -(-len(labels) // 3)
        figure.legend(handles, labels, loc="lower center", ncol=3, fontsize=7)
    figure.tight_layout(rect=(0, 0.05 * legend_rows, 1, 1))
    figure.savefig(path, dpi=110)


def noiseless(problem: Problem) -> Callable[[np.ndarray], float]:
    """What a run is scored with: a noisy problem's noiseless ``expected`` loss."""
    return getattr(problem, "expected", problem)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sweep", choices=sorted(SWEEPS))
    parser.add_argument("--budgets", type=int, nargs="+", default=[960, 3000, 10000])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--plot", metavar="PATH", help="PNG of median loss against budget")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    rows, seeds, start = SWEEPS[args.sweep], args.seeds, time.perf_counter()
    jobs = [(p, n, c, b, s) for p, n, c in rows for b in args.budgets for s in range(seeds)]
    with ProcessPoolExecutor(2) as pool:
        losses = np.array(list(pool.map(run, *zip(*jobs)))).reshape(len(rows), len(args.budgets), seeds)
    medians = np.median(losses, axis=2)
    print(table(args.sweep, args.budgets, medians, seeds))
    print(f"\n{time.perf_counter() - start:.0f} s on {os.cpu_count()} cores")
    if args.plot:
        plot(args.sweep, args.budgets, medians, args.plot)


if __name__ == "__main__":
    main()
