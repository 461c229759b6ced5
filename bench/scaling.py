"""Time and memory per ask/tell of ZeroGrads (default preset), d = 100 .. 200,000.

``python -m bench.scaling [--dims ...] [--iterations N] [--out DIR]``: each dimension runs
alone in a fresh single-threaded process; after one untimed warm-up update, ``N`` updates
(ask a batch, evaluate a cheap black box, tell it) are timed. Writes ``scaling.json`` and
``scaling.png`` into ``--out`` and prints a Markdown table.
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

from zg_asktell import ZeroGrads

from .report import machine
from .run import ROOT, THREAD_VARIABLES, PeakMemory, RunTimeout, execute, limits

DIMS = (100, 1_000, 10_000, 100_000, 200_000)
DEFAULT_OUT = ROOT / "bench" / "results" / "scaling"


@dataclass(frozen=True)
class Probe:
    dim: int
    iterations: int
    time_cap_s: float = 600.0
    memory_cap_gb: float = 8.0


@dataclass
class Measurement:
    dim: int
    batch: int = 0
    ask_ms: float | None = None  # per ask of one batch
    tell_ms: float | None = None  # per tell of one batch (surrogate fit and step)
    peak_memory_mb: float | None = None  # resident-set growth, optimizer construction included
    failure: str | None = None


def measure(probe: Probe) -> Measurement:
    result = Measurement(probe.dim)
    memory = PeakMemory()
    try:
        with limits(probe.time_cap_s, probe.memory_cap_gb):
            optimizer = ZeroGrads(np.zeros(probe.dim), 1.0, budget=10**9, seed=0)
            result.batch = optimizer.config.batch_size
            asking = telling = 0.0
            for iteration in range(probe.iterations + 1):  # the first one warms up
                clock = time.perf_counter()
                X = optimizer.ask()
                asked = time.perf_counter()
                losses = np.sum(np.round(X) ** 2, axis=1)
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
    return Measurement(probe.dim, failure="process died (killed by a limit or crashed)")


def markdown(data: dict[str, Any]) -> str:
    lines = [
        f"Measured {data['started']} on {data['machine']}; {data['iterations']} timed updates per dimension "
        f"(batch {data['measurements'][0]['batch']}), one thread.",
        "",
        "| d | ask ms | tell ms (fit + step) | µs per evaluation | peak MB | note |",
        "|---|---|---|---|---|---|",
    ]
    for m in data["measurements"]:
        if m["failure"]:
            lines.append(f"| {m['dim']} | – | – | – | {m['peak_memory_mb'] or 0:.0f} | {m['failure']} |")
            continue
        per_eval = 1e3 * (m["ask_ms"] + m["tell_ms"]) / m["batch"]
        columns = [
            f"{m['ask_ms']:.2f}",
            f"{m['tell_ms']:.1f}",
            f"{per_eval:.0f}",
            f"{m['peak_memory_mb']:.0f}",
        ]
        lines.append(f"| {m['dim']} | " + " | ".join(columns) + " | |")
    return "\n".join(lines)


def plot(measurements: Sequence[Measurement], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [m for m in measurements if m.failure is None]
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
    parser.add_argument("--iterations", type=int, default=3, help="timed updates per dimension")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    for variable in THREAD_VARIABLES:
        os.environ[variable] = "1"
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M")
    measurements = execute(measure, [Probe(d, args.iterations) for d in args.dims], 1, _died)
    measurements.sort(key=lambda m: m.dim)
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
