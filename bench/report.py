"""Tables, figures and ``docs/benchmarks.md`` from the runs of :mod:`bench.run`."""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .peers import ES_ABLATION, OPTIMIZERS, OURS
from .problems import FAMILIES
from .run import CURVE_POINTS, FULL_ESTIMATE, PRESETS, ROOT, RunResult

DOCS = ROOT / "docs" / "benchmarks.md"


# ------------------------------------------------------------------- aggregation
@dataclass
class Cell:
    """One optimizer on one problem instance at one budget, over seeds."""

    losses: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    us_per_eval: list[float] = field(default_factory=list)
    memory_mb: list[float] = field(default_factory=list)
    notes: set[str] = field(default_factory=set)

    @property
    def median(self) -> float | None:
        return float(np.median(self.losses)) if self.losses else None

    def status(self) -> str:
        parts = sorted(self.notes - {""})
        if self.failures:
            runs = len(self.failures) + len(self.losses)
            parts.append(f"{len(self.failures)}/{runs} failed: " + "; ".join(sorted(set(self.failures))))
        return "; ".join(parts)


Table = dict[tuple[str, int, str], Cell]  # (instance, budget, optimizer) -> Cell


def aggregate(results: Sequence[RunResult]) -> Table:
    cells: Table = {}
    for r in results:
        cell = cells.setdefault((r.task.instance, r.task.budget, r.task.optimizer), Cell())
        if r.failure is None and r.loss is not None:
            cell.losses.append(r.loss)
            cell.us_per_eval.append(1e6 * r.optimizer_seconds / max(r.evaluations, 1))
        else:
            cell.failures.append(r.failure or "no result")
        if r.peak_memory_mb is not None:
            cell.memory_mb.append(r.peak_memory_mb)
        cell.notes.add(r.note)
    return cells


def _ratio(value: float | None, reference: float | None) -> str:
    if value is None or reference is None:
        return "–"
    if reference == 0:
        return "1.00x" if value == 0 else "inf"
    ratio = value / reference
    if ratio >= 1e4:
        return f"{ratio:.1e}x"
    return f"{ratio:.0f}x" if ratio >= 100 else f"{ratio:.2f}x"


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"


def _cell(cells: Table, instance: str, budget: int, name: str) -> Cell:
    return cells.get((instance, budget, name), Cell())


def best(cells: Table, instance: str, budget: int, names: Sequence[str]) -> tuple[str, float | None]:
    """The optimizer among ``names`` with the lowest median and that median ("–", None if none)."""
    medians = [(m, n) for n in names if (m := _cell(cells, instance, budget, n).median) is not None]
    return (min(medians)[1], min(medians)[0]) if medians else ("–", None)


def summary_table(cells: Table, instances: Sequence[str], budget: int, optimizers: Sequence[str]) -> str:
    peers = [name for name in optimizers if name not in OURS]
    lines = [
        f"**Budget {budget}** — median loss of the final recommendation over seeds; "
        "ratios < 1 mean ZeroGrads is better.",
        "",
        "| problem | best peer | best peer loss | ZeroGrads loss | ZeroGrads vs best peer "
        "| ZeroGrads vs ES ablation | best overall |",
        "|---|---|---|---|---|---|---|",
    ]
    for instance in instances:
        ours = _cell(cells, instance, budget, "ZeroGrads").median
        ablation = _cell(cells, instance, budget, ES_ABLATION).median
        peer, peer_loss = best(cells, instance, budget, peers)
        columns = [instance, peer, _number(peer_loss), _number(ours), _ratio(ours, peer_loss)]
        columns += [_ratio(ours, ablation), best(cells, instance, budget, optimizers)[0]]
        lines.append("| " + " | ".join(columns) + " |")
    return "\n".join(lines)


def detail_table(cells: Table, instance: str, budgets: Sequence[int], optimizers: Sequence[str]) -> str:
    peers = [name for name in optimizers if name not in OURS]
    header = "| optimizer | " + " | ".join(f"{b}: median [min – max] | {b}: vs best peer" for b in budgets)
    header += " | µs/eval (optimizer) | peak MB | note |"
    lines = [f"**{instance}**", "", header, "|---" * (2 * len(budgets) + 4) + "|"]
    last = budgets[-1]
    for name in optimizers:
        row = [name]
        for budget in budgets:
            cell = _cell(cells, instance, budget, name)
            spread = f" [{min(cell.losses):.3g} – {max(cell.losses):.3g}]" if cell.losses else ""
            row += [
                _number(cell.median) + spread,
                _ratio(cell.median, best(cells, instance, budget, peers)[1]),
            ]
        cell = _cell(cells, instance, last, name)
        row.append(f"{np.median(cell.us_per_eval):.0f}" if cell.us_per_eval else "–")
        memory = float(np.median(cell.memory_mb)) if cell.memory_mb else None
        row.append("–" if memory is None else f"{memory:.1f}" if memory < 10 else f"{memory:.0f}")
        statuses = {b: _cell(cells, instance, b, name).status() for b in budgets}
        if len(set(statuses.values())) == 1:
            row.append(statuses[last])
        else:
            row.append("; ".join(f"{b}: {status}" for b, status in statuses.items() if status))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def ablation_table(
    cells: Table, instances: Sequence[str], budgets: Sequence[int], optimizers: Sequence[str]
) -> str:
    """Each of our presets' median over that of the ES ablation (same sampling, schedule, step)."""
    variants = [name for name in optimizers if name in OURS and name != ES_ABLATION]
    lines = [
        f"| problem | budget | {ES_ABLATION} median | "
        + " | ".join(f"{name} / {ES_ABLATION}" for name in variants)
        + " |",
        "|---|---|---|" + "---|" * len(variants),
    ]
    for instance in instances:
        for budget in budgets:
            es = _cell(cells, instance, budget, ES_ABLATION).median
            ratios = [_ratio(_cell(cells, instance, budget, name).median, es) for name in variants]
            lines.append(f"| {instance} | {budget} | {_number(es)} | " + " | ".join(ratios) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------- figures
def _colour(name: str) -> Any:
    import matplotlib

    return matplotlib.colormaps["tab20"](list(OPTIMIZERS).index(name) % 20)


def _loss_scale(ax: Any, which: str, values: Sequence[float]) -> None:
    """Log scale on axis ``which`` when the losses span over a decade (symlog if some are 0)."""
    from matplotlib import ticker

    positive = [v for v in values if v > 0]
    if not positive or max(positive) < 10 * min(positive):
        return
    set_scale, axis = getattr(ax, f"set_{which}scale"), getattr(ax, f"{which}axis")
    if len(positive) == len(values):
        set_scale("log")
        axis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.set_minor_formatter(ticker.NullFormatter())
    else:
        set_scale("symlog", linthresh=min(positive))


def plot_curves(results: Sequence[RunResult], instance: str, optimizers: Sequence[str], path: Path) -> None:
    import matplotlib.pyplot as plt

    budget = max(r.task.budget for r in results if r.task.instance == instance)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    plotted: list[float] = []
    for name in optimizers:
        key = (instance, budget, name)
        curves = [
            r.curve
            for r in results
            if (r.task.instance, r.task.budget, r.task.optimizer) == key and r.failure is None and r.curve
        ]
        if not curves:
            continue
        evals = [e for e, _ in curves[0]]
        values = np.array([[v for _, v in c] for c in curves])
        style = "-" if name in OURS else "--"
        ax.plot(evals, np.median(values, axis=0), style, color=_colour(name), label=name)
        ax.fill_between(evals, values.min(axis=0), values.max(axis=0), color=_colour(name), alpha=0.15)
        plotted += values.ravel().tolist()
    _loss_scale(ax, "y", plotted)
    ax.set(
        xscale="log",
        xlabel="evaluations",
        ylabel="loss of the recommendation",
        title=f"{instance}: median and min–max over seeds (budget {budget})",
    )
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_finals(
    cells: Table, instances: Sequence[str], budget: int, optimizers: Sequence[str], path: Path
) -> None:
    import matplotlib.pyplot as plt

    columns = min(3, len(instances))
    rows = math.ceil(len(instances) / columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(4.2 * columns, 0.28 * len(optimizers) * rows + 1.2), squeeze=False
    )
    for ax, instance in zip(axes.ravel(), instances):
        shown: list[float] = []
        for y, name in enumerate(optimizers):
            cell = _cell(cells, instance, budget, name)
            if cell.median is None:
                ax.text(
                    0.02,
                    y,
                    "failed",
                    transform=ax.get_yaxis_transform(),
                    fontsize=7,
                    va="center",
                    color="red",
                )
                continue
            low, high = min(cell.losses), max(cell.losses)
            error = [[cell.median - low], [high - cell.median]]
            marker = "o" if name in OURS else "s"
            ax.errorbar(cell.median, y, xerr=error, fmt=marker, color=_colour(name), ms=4, capsize=2)
            shown += cell.losses
        ax.set_yticks(range(len(optimizers)), optimizers, fontsize=7)
        ax.invert_yaxis()
        ax.set_title(instance, fontsize=9)
        _loss_scale(ax, "x", shown)
        ax.margins(x=0.08)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(instances) :]:
        ax.axis("off")
    fig.suptitle(f"Final loss at budget {budget}: median, min–max over seeds", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ------------------------------------------------------------------- report/docs
def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return f"{os.cpu_count()}-core CPU ({model}), {pages / 2**30:.0f} GiB RAM, {platform.system()}"


def versions() -> str:
    import cma
    import nevergrad
    import torch

    import zg_asktell

    return (
        f"Python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}, "
        f"nevergrad {nevergrad.__version__}, cma {cma.__version__}, zg_asktell {zg_asktell.__version__}"
    )


def report(data: dict[str, Any], results: Sequence[RunResult]) -> str:
    """Markdown: summary per budget, then one table per problem instance."""
    optimizers = [n for n in OPTIMIZERS if any(r.task.optimizer == n for r in results)]
    instances = list(dict.fromkeys(r.task.instance for r in results))
    budgets = sorted({r.task.budget for r in results})
    cells = aggregate(results)
    parts = ["### Summary", ""]
    parts += [summary_table(cells, instances, b, optimizers) + "\n" for b in budgets]
    if ES_ABLATION in optimizers:
        parts += [
            "### Against the ES ablation",
            "",
            ablation_table(cells, instances, budgets, optimizers) + "\n",
        ]
    parts += ["### Per problem", ""]
    parts += [detail_table(cells, i, budgets, optimizers) + "\n" for i in instances]
    failed = sum(r.failure is not None for r in results)
    parts.append(f"{len(results)} runs, {failed} failed; wall time {data['wall_seconds']:.0f} s.")
    return "\n".join(parts)


def write_figures(results: Sequence[RunResult], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    optimizers = [n for n in OPTIMIZERS if any(r.task.optimizer == n for r in results)]
    instances = list(dict.fromkeys(r.task.instance for r in results))
    cells = aggregate(results)
    paths = []
    for instance in instances:
        paths.append(out / f"curves_{instance}.png")
        plot_curves(results, instance, optimizers, paths[-1])
    for budget in sorted({r.task.budget for r in results}):
        paths.append(out / f"final_{budget}.png")
        plot_finals(cells, instances, budget, optimizers, paths[-1])
    return paths


def write_docs(data: dict[str, Any], results: Sequence[RunResult], out: Path) -> None:
    status = (
        f"> Results of the `full` preset, run {data['started']}."
        if data["preset"] == "full"
        else "> **Status: the full run is pending.** The numbers below come from the command "
        "below (a subset of the full preset's problems and budgets, on a shared 2-core machine). "
        "The full run "
        f"(`python -m bench.run --preset full --write-docs`) takes {FULL_ESTIMATE}."
    )
    full = PRESETS["full"]
    full_instances = sum(len(dims) for dims in full.problems.values())
    full_runs = full_instances * len(OPTIMIZERS) * full.seeds * len(full.budgets)
    from .scaling import DEFAULT_OUT, markdown

    scaling_json = DEFAULT_OUT / "scaling.json"
    scaling = (
        markdown(json.loads(scaling_json.read_text()))
        if scaling_json.exists()
        else "Not run yet: `python -m bench.scaling`."
    )
    shown_out = out.resolve().relative_to(ROOT) if out.resolve().is_relative_to(ROOT) else out

    text = f"""# Benchmarks

{status}

- Command: `{data["command"]}`
- Machine: {data["machine"]}
- Software: {data["versions"]}
- Settings: batch size {data["batch"]} for every optimizer (Nevergrad `num_workers`, pycma population,
  ZeroGrads `batch_size`); budgets {", ".join(map(str, data["budgets"]))} evaluations; {data["seeds"]} seeds;
  a run is capped at {data["time_cap_s"]:g} s wall clock and {data["memory_cap_gb"]:g} GiB of added
  address space.
- Wall time: {data["wall_seconds"]:.0f} s.
- Raw results and figures (`results.json`, `curves_<problem>.png`, `final_<budget>.png`):
  `{shown_out}` (not committed; rerun the command).

## What is measured

Each run starts from the problem's `x0` with initial width `sigma` = 0.1 x box width for every
optimizer, asks and tells whole batches, and at {CURVE_POINTS} checkpoints scores the optimizer's
*recommendation* (ZeroGrads presets: `recommendation="auto"`, theta during the run and the best
evaluated point, theta's final evaluation included, at the end; PRDPT: the mean;
Nevergrad: `provide_recommendation()`; sep-CMA: `xbest`). The tables give the median and min–max of
the final recommendation's loss over seeds; "vs best peer" divides a median by the best median among
the peers (every optimizer except ZeroGrads and its ablations), "ZeroGrads vs ES ablation" divides
ZeroGrads' median by that of preset `es` (same sampling, schedule and step, no surrogate). µs/eval is
the optimizer's own time (construction, ask, tell) per evaluation with the black box excluded, peak MB
the resident-set growth during the run (library code paged in excluded); both are medians over seeds
at the largest budget, measured with two runs in parallel on a shared machine, so treat them as
orders of magnitude. A run that fails (time cap, memory cap, exception) is listed with its reason.

Problems (`bench/problems.py`; instance seed 0, optimizer seeds 0..{data["seeds"] - 1}):
{_problem_list()}

Optimizers (`bench/peers.py`): ZeroGrads presets `default` (ZeroGrads), `reference` (ZG-reference,
the paper's settings except the shared batch size), `es` and `es-averaged` (ablations), and
`default` not told the budget (ZG-anytime; the robustness sweep only); PRDPT (our
implementation: antithetic Gaussian-smoothing gradient, Adam step 0.1 sigma, sigma held for half the
budget then decayed linearly to 0.1 of its start); sep-CMA (pycma, `CMA_diagonal=True`); SNES (our
implementation of separable natural evolution strategies, the high-dimension ES of EvoTorch and evosax,
with the paper's learning rates and fitness shaping); PGPE (our implementation, with ClipUp and
EvoTorch's default options; the robustness sweep only); Nevergrad CMA (DiagonalCMA from d >= 2000), SPSA,
TBPSA, NGOpt, OnePlusOne, RandomSearch.

Known peer limitations in this environment: Nevergrad runs use CSA step-size adaptation at every
dimension (pycma 4 switches to TPA from d >= 300, which Nevergrad 1.0.12's batched CMA wrapper
breaks with "Mean shift samples are expected but missing"); SPSA refuses parallel workers and runs
sequentially; NGOpt's MetaModel calls `float()` on a one-element array, which NumPy 2.4 rejects
(`TypeError: only 0-dimensional arrays ...`), and at large d NGOpt picks optimizers that exceed
the memory cap: those runs are listed as failed.

## Results

{report(data, results)}

## Scaling of ZeroGrads (default preset)

{scaling}

## Reproducing

- Quick (about a minute on 2 cores): `python -m bench.run --preset quick --write-docs`
  (also run by `tests/test_bench_quick.py`, marked slow).
- Full: `python -m bench.run --preset full --write-docs` — {full_runs} runs ({len(full.budgets)} budgets
  x {full.seeds} seeds x {len(OPTIMIZERS)} optimizers x {full_instances} problem instances up to
  d = 196,608), each capped at {full.time_cap_s:g} s and {full.memory_cap_gb:g} GiB; {FULL_ESTIMATE}.
- Scaling: `python -m bench.scaling` (time and memory per ask/tell, d = 100 .. 200,000).
- Subsets: `--problems sphere lander:1000 --optimizers ZeroGrads CMA --seeds 5 --budgets 1000`;
  `--from-results` re-renders tables, figures and docs from `results.json` without running.
"""
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    DOCS.write_text(text.replace("## Scaling of ZeroGrads", _kept_reading() + "## Scaling of ZeroGrads", 1))


def _kept_reading() -> str:
    """The hand-written "## Reading" section of the current page, kept across refreshes."""
    old = DOCS.read_text() if DOCS.exists() else ""
    start = old.find("## Reading")
    if start < 0:
        return ""
    end = old.find("\n## ", start + 1)
    return old[start : end + 1 if end >= 0 else len(old)]


def _problem_list() -> str:
    return "\n".join(
        f"- `{name}` ({'smooth control' if family.smooth else 'non-differentiable'}): {family.summary}"
        for name, family in FAMILIES.items()
    )
