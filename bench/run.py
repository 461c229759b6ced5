"""Benchmark harness: ``python -m bench.run --preset quick|full``.

Every (problem, optimizer, seed, budget) run is a fresh process (a forkserver with the
heavy imports preloaded, at most 2 at a time) with one BLAS/torch thread, a wall-clock cap
and a cap on the address space it may add; a run that fails (memory, time, exception) is
recorded with its reason. Prints Markdown tables and writes ``results.json`` and PNG
figures into ``--out``; ``--write-docs`` also refreshes ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import resource
import signal
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from .peers import OPTIMIZERS, SWEEP_ONLY, Setting, make_peer
from .problems import FAMILIES, initial_sigma, make_problem

ROOT = Path(__file__).resolve().parent.parent
MAX_WORKERS = 2
PRELOAD = ["bench._preload"]
DEFAULT_OPTIMIZERS = [name for name in OPTIMIZERS if name not in SWEEP_ONLY]
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
CURVE_POINTS = 12
FULL_ESTIMATE = (
    "at most 30-60 CPU-hours, i.e. 15-30 hours on 2 cores (extrapolated from the quick run, "
    "64-evaluation probes at the largest dimensions and `bench.scaling` when ZeroGrads' surrogate "
    "at d = 196,608 cost ~0.2 s of optimizer time per evaluation; its width rule has since cut that "
    "to ~0.04 s, ~20 min per 30,000-evaluation run), with NGOpt's meta-model at d ~ 10,000 "
    "(~0.15 s per evaluation) the other large cost"
)


@dataclass(frozen=True)
class Preset:
    problems: dict[str, tuple[int, ...]]  # family -> dimensions
    budgets: tuple[int, ...]
    seeds: int
    time_cap_s: float
    memory_cap_gb: float  # address space a run may add on top of its imports


PRESETS = {
    "quick": Preset(
        problems={
            "sphere": (10,),
            "rosenbrock": (10,),
            "ellipsoid": (10,),
            "quantized-quadratic": (10,),
            "integer": (10,),
            "disc-raster": (12,),
            "texture": (192,),
            "step-net": (160,),
            "lander": (10,),
        },
        budgets=(320, 960),
        seeds=3,
        time_cap_s=60.0,
        memory_cap_gb=2.0,
    ),
    "full": Preset(
        problems={
            "sphere": (10, 100, 1000, 10000),
            "rosenbrock": (10, 100, 1000),
            "ellipsoid": (10, 100, 1000),
            "quantized-quadratic": (10, 100, 1000, 10000),
            "integer": (10, 100, 1000),
            "disc-raster": (12, 60, 300),
            "texture": (192, 3072, 49152, 196608),
            "step-net": (160, 610, 2410, 9610),
            "lander": (10, 100, 1000, 20000),
        },
        budgets=(3000, 30000),
        seeds=3,
        time_cap_s=3 * 3600.0,  # ZeroGrads at d = 196,608 needs ~1.6 h for 30,000 evaluations
        memory_cap_gb=8.0,
    ),
}


@dataclass(frozen=True)
class Task:
    family: str
    dim: int
    optimizer: str
    seed: int
    budget: int
    batch: int
    time_cap_s: float
    memory_cap_gb: float
    sigma_scale: float = 1.0  # every optimizer starts at this multiple of the problem's sigma

    @property
    def instance(self) -> str:
        return f"{self.family}-{self.dim}"


@dataclass
class RunResult:
    task: Task
    loss: float | None = None  # the final recommendation's loss; None if the run failed
    failure: str | None = None
    evaluations: int = 0
    curve: list[tuple[int, float]] = field(default_factory=list)  # (evaluations, loss of recommendation)
    optimizer_seconds: float = 0.0  # inside ask/tell (and construction), black box excluded
    evaluation_seconds: float = 0.0
    peak_memory_mb: float | None = None  # peak RSS growth during the run
    note: str = ""


# ------------------------------------------------------------------ isolation helpers
class RunTimeout(BaseException):
    """Raised by SIGALRM; a BaseException so that no library's ``except Exception`` eats it."""


def _status_kb(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


class PeakMemory:
    """Peak resident-set growth from construction on, library code paged in excluded.

    Linux: the high-water mark VmHWM is reset through ``/proc/self/clear_refs``; the growth
    of file-backed pages (shared libraries touched for the first time) is subtracted.
    """

    def __init__(self) -> None:
        self.baseline_kb = _status_kb("VmRSS") or 0
        self.file_kb = _status_kb("RssFile") or 0
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.reset = True
        except OSError:
            self.reset = False

    def megabytes(self) -> float:
        peak_kb = _status_kb("VmHWM") if self.reset else None
        if peak_kb is None:
            peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        paged_in_kb = (_status_kb("RssFile") or 0) - self.file_kb
        return max(0, peak_kb - self.baseline_kb - paged_in_kb) / 1024


def _raise_timeout(signum: int, frame: object) -> None:
    raise RunTimeout


@contextmanager
def limits(time_cap_s: float, memory_cap_gb: float) -> Iterator[None]:
    """One torch thread, warnings off, a wall-clock alarm, address-space and CPU-time limits."""
    import torch

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    mapped_kb = _status_kb("VmSize")
    if mapped_kb is not None:
        cap = mapped_kb * 1024 + int(memory_cap_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    cpu = int(time_cap_s) + 60  # SIGXCPU kills a run stuck where the alarm cannot interrupt it
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 10))
    signal.signal(signal.SIGALRM, _raise_timeout)
    signal.alarm(max(1, math.ceil(time_cap_s)))
    try:
        yield
    finally:
        signal.alarm(0)


T = TypeVar("T")
R = TypeVar("R")


def execute(
    function: Callable[[T], R],
    tasks: Sequence[T],
    workers: int,
    died: Callable[[T], R],
    done: Callable[[R], None] = lambda result: None,
) -> list[R]:
    """``function`` on every task, each in a fresh process, ``workers`` at a time.

    A process that dies (killed by a limit, crashed) breaks the pool for every run in
    flight: those are retried one at a time, and a run that dies alone gets ``died(task)``.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    results: list[R] = []
    queue, broken = list(tasks), list[T]()
    with ProcessPoolExecutor(workers, mp_context=context, max_tasks_per_child=1) as pool:
        running: dict[Future[R], T] = {}
        while queue or running:
            while queue and not broken and len(running) < workers:
                task = queue.pop(0)
                running[pool.submit(function, task)] = task
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                task = running.pop(future)
                try:
                    results.append(future.result())
                except BrokenProcessPool:
                    broken.append(task)
                    continue
                done(results[-1])
    if workers == 1 and broken:  # it ran alone: it is the one that died
        results.append(died(broken[0]))
        done(results[-1])
    else:
        for task in broken:
            results += execute(function, [task], 1, died, done)
    if queue:
        results += execute(function, queue, workers, died, done)
    return results


# ----------------------------------------------------------------------- one run
def checkpoints(budget: int, batch: int) -> list[int]:
    """Evaluation counts (ends of batches) where the recommendation is scored."""
    marks = {min(budget, math.ceil(p / batch) * batch) for p in np.geomspace(batch, budget, CURVE_POINTS)}
    return sorted(marks | {budget})


def _failure(error: BaseException, task: Task, evaluations: int) -> str:
    if isinstance(error, RunTimeout):
        return f"time cap {task.time_cap_s:g} s after {evaluations} evaluations"
    text = str(error).strip().splitlines()[0][:120] if str(error).strip() else ""
    if isinstance(error, MemoryError) or "allocate" in text.lower() or "memory" in text.lower():
        return (
            f"memory cap {task.memory_cap_gb:g} GiB after {evaluations} evaluations ({type(error).__name__})"
        )
    return f"{type(error).__name__}: {text} (after {evaluations} evaluations)"


def run_task(task: Task) -> RunResult:
    """One optimizer on one problem for one budget (in a worker process)."""
    result = RunResult(task)
    problem = make_problem(task.family, task.dim)
    setting = Setting(problem, task.sigma_scale * initial_sigma(problem), task.budget, task.batch, task.seed)
    marks = checkpoints(task.budget, task.batch)
    memory = PeakMemory()
    try:
        with limits(task.time_cap_s, task.memory_cap_gb):
            clock = time.perf_counter()
            peer = make_peer(task.optimizer, setting)
            result.optimizer_seconds = time.perf_counter() - clock
            while result.evaluations < task.budget:
                n = min(peer.batch, task.budget - result.evaluations)
                clock = time.perf_counter()
                X = peer.ask(n)
                asked = time.perf_counter()
                losses = np.array([problem(x) for x in X])
                evaluated = time.perf_counter()
                peer.tell(X, losses)
                result.optimizer_seconds += (asked - clock) + (time.perf_counter() - evaluated)
                result.evaluation_seconds += evaluated - asked
                result.evaluations += n
                while marks and result.evaluations >= marks[0]:
                    result.curve.append((marks.pop(0), problem(peer.recommend())))
            result.loss = result.curve[-1][1]
            result.note = peer.note
    except (Exception, RunTimeout) as error:
        result.failure = _failure(error, task, result.evaluations)
    result.peak_memory_mb = memory.megabytes()
    return result


def _died(task: Task) -> RunResult:
    return RunResult(task, failure="worker process died (killed by the CPU/memory limit or crashed)")


# ---------------------------------------------------------------------------- CLI
def build_tasks(args: argparse.Namespace, preset: Preset) -> list[Task]:
    instances: list[tuple[str, int]] = []
    for token in args.problems or list(preset.problems):
        family, _, dim = token.partition(":")
        if family not in FAMILIES or (dim and not dim.isdigit()):
            raise SystemExit(
                f"bad problem {token!r}: use FAMILY or FAMILY:DIM with FAMILY in {list(FAMILIES)}"
            )
        instances += [(family, int(dim))] if dim else [(family, d) for d in preset.problems[family]]
    instances = list(dict.fromkeys(instances))
    for name in args.optimizers or []:
        if name not in OPTIMIZERS:
            raise SystemExit(f"unknown optimizer {name!r}; choose from {list(OPTIMIZERS)}")
    tasks = [
        Task(
            family,
            dim,
            name,
            seed,
            budget,
            args.batch,
            args.time_cap or preset.time_cap_s,
            args.memory_cap or preset.memory_cap_gb,
        )
        for family, dim in instances
        for name in args.optimizers or DEFAULT_OPTIMIZERS
        for seed in range(args.seeds or preset.seeds)
        for budget in args.budgets or preset.budgets
    ]
    for family, dim in instances:
        try:
            make_problem(family, dim)  # fail early on a dimension the family cannot take
        except ValueError as error:
            raise SystemExit(str(error)) from None
    return sorted(tasks, key=lambda t: (-t.budget * math.log(t.dim + 1), t.instance, t.optimizer, t.seed))


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    parser.add_argument(
        "--problems",
        nargs="+",
        metavar="FAMILY[:DIM]",
        help=f"families ({', '.join(FAMILIES)}), optionally with one dimension",
    )
    parser.add_argument("--optimizers", nargs="+", metavar="NAME", help=", ".join(OPTIMIZERS))
    parser.add_argument("--seeds", type=int, help="number of optimizer seeds (0..N-1)")
    parser.add_argument("--budgets", type=int, nargs="+", help="evaluation budgets")
    parser.add_argument("--batch", type=int, default=16, help="batch size for every optimizer (even)")
    parser.add_argument("--workers", type=int, choices=range(1, MAX_WORKERS + 1), default=MAX_WORKERS)
    parser.add_argument("--time-cap", type=float, help="seconds per run (default: the preset's)")
    parser.add_argument("--memory-cap", type=float, help="GiB of added address space per run")
    parser.add_argument("--out", type=Path, help="output folder (default bench/results/<preset>)")
    parser.add_argument("--write-docs", action="store_true", help="refresh docs/benchmarks.md")
    parser.add_argument(
        "--from-results", action="store_true", help="re-render from <out>/results.json instead of running"
    )
    args = parser.parse_args(argv)
    if args.seeds is not None and args.seeds < 1:
        parser.error("--seeds must be at least 1")
    if args.batch < 2 or args.batch % 2:
        parser.error("--batch must be even and >= 2 (antithetic optimizers ask in pairs)")
    if args.budgets and min(args.budgets) < args.batch:
        parser.error("every budget must hold at least one batch")
    return args


def _order(task: Task) -> tuple[int, int, int]:
    return list(FAMILIES).index(task.family), task.dim, list(OPTIMIZERS).index(task.optimizer)


def _load(path: Path) -> tuple[dict[str, Any], list[RunResult]]:
    data = json.loads(path.read_text())
    runs = [
        RunResult(**{**run, "task": Task(**run["task"]), "curve": [tuple(p) for p in run["curve"]]})
        for run in data.pop("runs")
    ]
    return data, runs


def main(argv: Sequence[str] | None = None) -> int:
    from .report import DOCS, machine, report, versions, write_docs, write_figures  # it imports this module

    args = parse(argv)
    out = args.out or ROOT / "bench" / "results" / args.preset
    out.mkdir(parents=True, exist_ok=True)
    if args.from_results:
        data, results = _load(out / "results.json")
    else:
        for variable in THREAD_VARIABLES:
            os.environ[variable] = "1"  # inherited by the forkserver before it imports numpy
        preset = PRESETS[args.preset]
        tasks = build_tasks(args, preset)
        started, clock = time.strftime("%Y-%m-%d %H:%M"), time.perf_counter()
        from tqdm import tqdm

        with tqdm(total=len(tasks), desc=f"bench {args.preset}", unit="run", file=sys.stderr) as bar:
            results = execute(run_task, tasks, args.workers, _died, lambda _: bar.update())
        results.sort(key=lambda r: (*_order(r.task), r.task.budget, r.task.seed))
        data = {
            "preset": args.preset,
            "command": "python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": machine(),
            "versions": versions(),
            "started": started,
            "wall_seconds": time.perf_counter() - clock,
            "batch": args.batch,
            "budgets": sorted({t.budget for t in tasks}),
            "seeds": args.seeds or preset.seeds,
            "time_cap_s": tasks[0].time_cap_s if tasks else preset.time_cap_s,
            "memory_cap_gb": tasks[0].memory_cap_gb if tasks else preset.memory_cap_gb,
        }
        (out / "results.json").write_text(
            json.dumps({**data, "runs": [asdict(r) for r in results]}, indent=1)
        )
    print(report(data, results))
    figures = write_figures(results, out)
    print(f"\nWrote {out / 'results.json'} and {len(figures)} figures into {out}")
    if args.write_docs:
        write_docs(data, results, out)
        print(f"Wrote {DOCS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
