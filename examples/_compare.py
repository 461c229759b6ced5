"""The examples' shared harness: ZeroGrads against the paper's peers at equal evaluations.

Not an example itself (sphinx-gallery runs ``plot_*.py`` only). The peers come from the
benchmark (``bench/peers.py``), which lives in the repository and is not installed: the
examples run from a clone, and this module puts the clone's root on ``sys.path``.

An example builds a :class:`zg_asktell.problems.Problem`, calls :func:`compare` with a start
width, a budget of evaluations and a batch size, then :func:`report` to print the table and
save the figure. Every optimizer gets the same start, width, budget, batch size and seed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cma
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.peers import DIAGONAL_CMA_FROM, Setting, make_peer  # noqa: E402
from bench.run import PeakMemory, checkpoints  # noqa: E402
from zg_asktell.problems import FloatArray, Problem  # noqa: E402

REFERENCE = "ZeroGrads"


def default_optimizers(dim: int) -> tuple[str, ...]:
    """The paper's comparison: ZeroGrads, CMA-ES (full below ``DIAGONAL_CMA_FROM``
    variables, separable above: the full covariance is d x d), SPSA, PRDPT-style annealed
    ES and our ``es`` preset (ZeroGrads' sampling and step without the surrogate)."""
    cma = "CMA" if dim < DIAGONAL_CMA_FROM else "sep-CMA"
    return (REFERENCE, cma, "SPSA", "PRDPT", "ZG-es")


@dataclass
class Run:
    """One optimizer's run: the loss of its answer after ``evaluations[i]`` evaluations."""

    optimizer: str
    evaluations: list[int]
    losses: list[float]
    seconds: float
    cpu_seconds: float
    peak_mb: float
    note: str
    answer: FloatArray

    @property
    def loss(self) -> float:
        return self.losses[-1]


def run_one(optimizer: str, setting: Setting) -> Run:
    """``optimizer`` (a name of ``bench.peers.OPTIMIZERS``) for ``setting.budget`` evaluations;
    the candidates of each ask are evaluated at once (``Problem.losses``)."""
    # Nevergrad peers switch pycma's TPA step-size rule off for the whole process (see
    # bench/peers.py); restored after each run so that sep-CMA's result does not depend on
    # which optimizers ran before it in the same process (the gallery runs every example in one).
    tpa_dimension = cma.evolution_strategy.TPA_dimension
    try:
        return _run(optimizer, setting)
    finally:
        cma.evolution_strategy.TPA_dimension = tpa_dimension


def _run(optimizer: str, setting: Setting) -> Run:
    problem = setting.problem
    marks = checkpoints(setting.budget, setting.batch)
    evaluations: list[int] = []
    losses: list[float] = []
    memory = PeakMemory()
    clock, cpu = time.perf_counter(), time.process_time()
    peer = make_peer(optimizer, setting)
    done = 0
    while done < setting.budget:
        X = peer.ask(min(peer.batch, setting.budget - done))
        peer.tell(X, problem.losses(X))
        done += len(X)
        while marks and done >= marks[0]:
            evaluations.append(marks.pop(0))
            losses.append(problem(peer.recommend()))
    seconds, cpu = time.perf_counter() - clock, time.process_time() - cpu
    return Run(optimizer, evaluations, losses, seconds, cpu, memory.megabytes(), peer.note, peer.recommend())


def compare(
    problem: Problem,
    sigma: float,
    budget: int,
    batch: int,
    *,
    optimizers: Sequence[str] | None = None,
    seed: int = 0,
) -> dict[str, Run]:
    """Each of ``optimizers`` (default :func:`default_optimizers`) on ``problem`` from
    ``problem.x0`` with start width ``sigma``, ``budget`` evaluations in batches of
    ``batch`` (even: the antithetic methods ask in pairs), one after the other."""
    if batch < 2 or batch % 2:
        raise ValueError(f"batch must be even and >= 2 (antithetic pairs), got {batch}")
    if budget < batch:
        raise ValueError(f"budget {budget} must hold at least one batch of {batch}")
    setting = Setting(problem, sigma, budget, batch, seed)
    names = default_optimizers(problem.dim) if optimizers is None else optimizers
    runs = {}
    for name in names:
        runs[name] = run_one(name, setting)
        print(f"  {name}: loss {runs[name].loss:.4g} in {runs[name].seconds:.1f} s", flush=True)
    return runs


def table(runs: dict[str, Run], start_loss: float) -> str:
    """A Markdown table: final loss, its ratio to ZeroGrads' and to the start, wall and CPU
    time (they differ on a busy machine), peak memory added, and the peer's note."""
    reference = runs[REFERENCE].loss if REFERENCE in runs else math.nan
    rows = [
        "| optimizer | final loss | / ZeroGrads | / start | wall s | CPU s | peak MB | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, run in runs.items():
        ratio = run.loss / reference if reference > 0 else math.nan
        rows.append(
            f"| {name} | {run.loss:.4g} | {ratio:.2f} | {run.loss / start_loss:.3f} "
            f"| {run.seconds:.1f} | {run.cpu_seconds:.1f} | {run.peak_mb:.0f} | {run.note} |"
        )
    return "\n".join(rows)


def plot_curves(ax: Axes, runs: dict[str, Run], start_loss: float) -> None:
    """Each run's loss against evaluations on ``ax`` (a matplotlib Axes), log scale."""
    for name, run in runs.items():
        width = 2 if name == REFERENCE else 1
        ax.plot([0, *run.evaluations], [start_loss, *run.losses], label=name, lw=width)
    ax.set(xlabel="evaluations", ylabel="loss of the answer", yscale="log")
    ax.legend(fontsize="small")


def figure(
    runs: dict[str, Run],
    start_loss: float,
    render: Callable[[FloatArray], FloatArray],
    target: FloatArray,
    **style: Any,
) -> Figure:
    """The target image, what ZeroGrads' answer and the best peer's render to (``render``
    maps an answer to an image), then the curves; ``style`` goes to ``imshow``."""
    peers = [name for name in runs if name != REFERENCE]
    panels = {"target": target}
    for name in (REFERENCE, min(peers, key=lambda name: runs[name].loss, default=None)):
        if name in runs:
            panels[f"{name} ({runs[name].loss:.3g})"] = render(runs[name].answer)
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(3.3 * (len(panels) + 1), 3.2))
    for ax, (title, image) in zip(axes, panels.items()):
        ax.imshow(image, **style)
        ax.set(title=title, xticks=[], yticks=[])
    plot_curves(axes[-1], runs, start_loss)
    fig.tight_layout()
    return fig


def parse_args(description: str | None) -> argparse.Namespace:
    """The examples' command line: ``--full`` (the paper's size), ``--seed``, ``--budget``
    (evaluations per optimizer, default the example's), ``--optimizers`` (default
    :func:`default_optimizers`), ``--out`` (where a script run saves its figure and
    ``<name>.json``; default the current directory)."""
    title = (description or "").strip().splitlines()  # sphinx-gallery runs the code with __doc__ = ""
    parser = argparse.ArgumentParser(description=title[0] if title else None)
    parser.add_argument("--full", action="store_true", help="the paper's problem size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=int, default=None, help="evaluations per optimizer")
    parser.add_argument("--optimizers", nargs="+", default=None, help="names of bench.peers.OPTIMIZERS")
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for the figure and JSON")
    return parser.parse_args()


def in_gallery() -> bool:
    """Whether sphinx-gallery is running the example (it shows the figure itself)."""
    return "sphinx_gallery" in sys.modules


def report(name: str, runs: dict[str, Run], start_loss: float, figure: Figure, out: Path) -> None:
    """Print the table; run as a script, also save ``figure`` as ``out/<name>.png`` and the
    curves as ``out/<name>.json`` (the tests read it)."""
    print(table(runs, start_loss))
    if in_gallery():
        return
    out.mkdir(parents=True, exist_ok=True)
    figure.savefig(out / f"{name}.png", dpi=100)
    curves = {label: {k: v for k, v in asdict(run).items() if k != "answer"} for label, run in runs.items()}
    summary = {"start": start_loss, "runs": curves}
    (out / f"{name}.json").write_text(json.dumps(summary, indent=1))
    print(f"saved {out / name}.png and .json")
