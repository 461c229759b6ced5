"""Time and memory per ask/tell of ZeroGrads (default preset) and its peers, d = 100 .. 200,000.

``python -m bench.scaling [--dims ...] [--optimizers ...] [--iterations N] [--out DIR]``:
each (optimizer, dimension) runs alone in a fresh single-threaded process, through the
benchmark's batch interface (batch 16) on the integer program; after one untimed warm-up
update, ``N`` updates (ask a batch, evaluate it, tell it) are timed. Writes ``scaling.json``
and ``scaling.png`` (ZeroGrads) into ``--out`` and prints Markdown tables: ZeroGrads' ask and
tell, then every optimizer's time per evaluation and memory.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zg_asktell.problems import IntegerProgram

from .peers import OPTIMIZERS, Setting, make_peer
from .report import machine
from .run import ROOT, THREAD_VARIABLES, PeakMemory, RunTimeout, execute, limits

DIMS = (100, 1_000, 10_000, 100_000, 200_000)
OPTIMIZERS_MEASURED = ("ZeroGrads", "ZG-es", "PRDPT", "SNES", "sep-CMA", "CMA")
BATCH = 16
DEFAULT_OUT = ROOT / "bench" / "results" / "scaling"


@dataclass(frozen=True)
class Probe:
    dim: int
    optimizer: str
    iterations: int
    time_cap_s: float = 600.0
    memory_cap_gb: float = 8.0


@dataclass
class Measurement:
    dim: int
    optimizer: str = "ZeroGrads"
    batch: int = 0
    ask_ms: float | None = None  # per ask of one batch
    tell_ms: float | None = None  # per tell of one batch (surrogate fit and step)
    peak_memory_mb: float | None = None  # resident-set growth, optimizer construction included
    failure: str | None = None


def measure(probe: Probe) -> Measurement:
    result = Measurement(probe.dim, probe.optimizer)
    memory = PeakMemory()
    try:
        with limits(probe.time_cap_s, probe.memory_cap_gb):
            problem = IntegerProgram.make(probe.dim)
            optimizer = make_peer(probe.optimizer, Setting(problem, 1.0, 10**9, BATCH, seed=0))
            result.batch = optimizer.batch
            asking = telling = 0.0
            for iteration in range(probe.iterations + 1):  # the first one warms up
                clock = time.perf_counter()
                X = optimizer.ask(optimizer.batch)
                asked = time.perf_counter()
                losses = np.array([problem(x) for x in X])
                evaluated = time.perf_counter()
                optimizer.tell(X, losses)
                if iteration:
                    asking += asked - clock
                    telling += time.perf_counter() - evaluated
            result.ask_ms = 1e3 * asking / probe.iterations
            result.tell_ms = 1e3 * telling / probe.iterations
    except RunTimeout:
        result.failure = f"time cap {probe.time_cap_s:g} s"
    except Exception as error:
        result.failure = f"{type(error).__name__}: {str(error)[:120]}"
    result.peak_memory_mb = memory.megabytes()
    return result


def _died(probe: Probe) -> Measurement:
    return Measurement(probe.dim, probe.optimizer, failure="process died (killed by a limit or crashed)")


def _name(m: dict[str, Any]) -> str:
    """The measured optimizer (files written before peers were measured hold ZeroGrads only)."""
    return str(m.get("optimizer", "ZeroGrads"))


def _per_evaluation_us(m: dict[str, Any]) -> float:
    return 1e3 * float(m["ask_ms"] + m["tell_ms"]) / int(m["batch"])


def markdown(data: dict[str, Any]) -> str:
    """ZeroGrads' ask and tell per dimension, then every optimizer's time per evaluation
    (ratio to ZeroGrads' in brackets) and peak memory."""
    ours = [m for m in data["measurements"] if _name(m) == "ZeroGrads"]
    lines = [
        f"Measured {data['started']} on {data['machine']}; {data['iterations']} timed updates per "
        f"dimension (batch {BATCH}), one thread, on the integer program.",
        "",
        "| d | ask ms | tell ms (fit + step) | µs per evaluation | peak MB | note |",
        "|---|---|---|---|---|---|",
    ]
    for m in ours:
        if m["failure"]:
            lines.append(f"| {m['dim']} | – | – | – | {m['peak_memory_mb'] or 0:.0f} | {m['failure']} |")
            continue
        columns = [f"{m['ask_ms']:.2f}", f"{m['tell_ms']:.1f}", f"{_per_evaluation_us(m):.0f}"]
        lines.append(f"| {m['dim']} | " + " | ".join(columns) + f" | {m['peak_memory_mb']:.0f} | |")
    names = list(dict.fromkeys(_name(m) for m in data["measurements"]))
    if len(names) < 2:
        return "\n".join(lines)
    cells = {(_name(m), m["dim"]): m for m in data["measurements"]}
    lines += [
        "",
        "Every optimizer, µs of optimizer time per evaluation (in brackets: ratio to ZeroGrads) "
        "and peak MB; a failure gives its reason:",
        "",
        "| d | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for dim in sorted({m["dim"] for m in data["measurements"]}):
        ours_m = cells.get(("ZeroGrads", dim))
        reference = _per_evaluation_us(ours_m) if ours_m and not ours_m["failure"] else None
        row = []
        for name in names:
            m = cells.get((name, dim))
            if m is None:
                row.append("–")
            elif m["failure"]:
                row.append(f"failed: {m['failure']}")
            else:
                us = _per_evaluation_us(m)
                ratio = f" ({us / reference:.2g}x)" if reference and name != "ZeroGrads" else ""
                row.append(f"{us:.0f}{ratio}, {m['peak_memory_mb']:.0f} MB")
        lines.append(f"| {dim} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def plot(measurements: Sequence[Measurement], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [m for m in measurements if m.failure is None and m.optimizer == "ZeroGrads"]
    dims = [m.dim for m in ok]
    asking = np.array([m.ask_ms for m in ok], dtype=float)
    telling = np.array([m.tell_ms for m in ok], dtype=float)
    fig, (timing, memory) = plt.subplots(1, 2, figsize=(9, 3.6))
    timing.loglog(dims, asking + telling, "o-", label="ask + tell")
    timing.loglog(dims, telling, "s--", label="tell (fit + step)")
    timing.set(xlabel="dimension", ylabel="ms per batch", title="ZeroGrads default: time per update")
    timing.legend()
    memory.loglog(dims, [max(m.peak_memory_mb or 0, 1) for m in ok], "o-")
    memory.set(xlabel="dimension", ylabel="peak RSS growth (MB)", title="memory")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=list(DIMS))
    parser.add_argument(
        "--optimizers", nargs="+", default=list(OPTIMIZERS_MEASURED), choices=list(OPTIMIZERS)
    )
    parser.add_argument("--iterations", type=int, default=3, help="timed updates per dimension")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    for variable in THREAD_VARIABLES:
        os.environ[variable] = "1"
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M")
    probes = [Probe(d, name, args.iterations) for name in args.optimizers for d in args.dims]
    measurements = execute(measure, probes, 1, _died)
    measurements.sort(key=lambda m: (args.optimizers.index(m.optimizer), m.dim))
    data = {
        "started": started,
        "machine": machine(),
        "iterations": args.iterations,
        "measurements": [asdict(m) for m in measurements],
    }
    (args.out / "scaling.json").write_text(json.dumps(data, indent=1))
    plot(measurements, args.out / "scaling.png")
    print(markdown(data))
    print(f"\nWrote {args.out / 'scaling.json'} and {args.out / 'scaling.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
