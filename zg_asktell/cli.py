"""The zg-asktell command line (also: python -m zg_asktell).

run optimizes around any program; init, ask, tell, status and plot are a stateless file
protocol for schedulers; demo runs the disc-rasterizer demo. File formats and the
failure policy: docs/external.md.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import warnings
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

from ._config import PRESETS, ZeroGradsConfig, preset
from ._minimize import FailedRunWarning, minimize
from ._optimizer import ZeroGrads
from .command import Command, stop_running
from .runs import (
    PARAM_FORMATS,
    FloatArray,
    Outcome,
    RunDir,
    ask_batch,
    make_settings,
    read_losses,
    read_params,
    record,
    replace_atomically,
    write_params,
)

PROG = "zg-asktell"
LOCK_WAIT = 60.0  # seconds ask/tell wait for another writer of the run


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 done, 1 error, 2 usage, 130 interrupted)."""
    words = list(sys.argv[1:] if argv is None else argv)
    program: list[str] = []
    if "--" in words:
        cut = words.index("--")
        words, program = words[:cut], words[cut + 1 :]
    parser = _parser()
    args = parser.parse_args(words)
    if program and args.command != "run":
        parser.error(f"only `{PROG} run` takes a program after --")
    try:
        status: int = args.handler(args, program)
    except (ValueError, OSError, RuntimeError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    return status


# ------------------------------------------------------------------------------ parser
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="optimize around a program: zg-asktell run --dim N --budget B -- ./simulate {params}",
        description="Run the whole optimization, evaluating each candidate with the program "
        "given after --; {params} becomes the candidate file, {loss} a loss file path.",
    )
    _run_dir_option(run)
    _optimizer_options(run)
    run.add_argument("--workers", type=int, default=1, help="evaluations run at once (default 1)")
    run.add_argument("--timeout", type=float, help="seconds one evaluation may take (default: no limit)")
    run.add_argument(
        "--retries", type=int, default=0, help="re-evaluations of a failed candidate (default 0)"
    )
    run.add_argument(
        "--loss-from",
        choices=("stdout", "file"),
        default="stdout",
        help="read the loss from the last stdout line (default) or from the {loss} file",
    )
    run.add_argument("--resume", action="store_true", help="continue the run in --dir (or start it)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(handler=_run)

    init = commands.add_parser("init", help="file protocol: create a run directory")
    _run_dir_option(init)
    _optimizer_options(init)
    init.set_defaults(handler=_init)

    ask = commands.add_parser("ask", help="file protocol: write the next batch; prints its number")
    _run_dir_option(ask)
    ask.set_defaults(handler=_ask)

    tell = commands.add_parser("tell", help="file protocol: read the losses of a batch")
    _run_dir_option(tell)
    tell.add_argument("batch", type=int, help="the batch number printed by ask")
    tell.add_argument("--losses", help="losses file (default: DIR/batches/BATCH/losses.txt)")
    tell.set_defaults(handler=_tell)

    status = commands.add_parser("status", help="progress, best loss and failures of a run")
    _run_dir_option(status)
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.set_defaults(handler=_status)

    plot = commands.add_parser("plot", help="PNG of the loss curve and the parameter trajectory")
    _run_dir_option(plot)
    plot.add_argument("--out", help="PNG to write (default: DIR/plot.png)")
    plot.set_defaults(handler=_plot)

    demo = commands.add_parser("demo", help="fit hard-edged discs to an image; compare with CMA")
    demo.add_argument("--budget", type=int, default=10000, help="evaluations per optimizer")
    demo.add_argument("--discs", type=int, default=40, help="discs to fit (6 parameters each)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--out", default="demo.png", help="PNG to write")
    demo.set_defaults(handler=_demo)
    return parser


def _run_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", default="zg-run", help="run directory (default: ./zg-run)")


def _optimizer_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("optimizer")
    group.add_argument("--dim", type=int, help="number of parameters (start at zeros)")
    group.add_argument("--x0", help="start point file (.npy, .json, .csv or .txt)")
    group.add_argument("--sigma", type=float, help="initial smoothing width (default 0.1 of the box, else 1)")
    group.add_argument("--lower", type=float, help="lower bound of every parameter")
    group.add_argument("--upper", type=float, help="upper bound of every parameter")
    group.add_argument("--budget", type=int, required=True, help="evaluations to run")
    group.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    group.add_argument("--preset", default="default", choices=sorted(PRESETS), help="configuration preset")
    group.add_argument("--batch-size", type=int, help="candidates per batch")
    group.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any ZeroGradsConfig option, e.g. --set lr=0.2 (repeatable)",
    )
    group.add_argument(
        "--format", choices=PARAM_FORMATS, default="csv", help="candidate file format (default csv)"
    )


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    if args.x0 is not None:
        x0 = read_params(args.x0)
        if x0.ndim != 1:
            raise ValueError(f"--x0 {args.x0!r} holds an array of shape {x0.shape}; give one vector")
        if args.dim is not None and args.dim != x0.size:
            raise ValueError(f"--dim {args.dim} but --x0 {args.x0!r} has {x0.size} values; drop --dim")
    elif args.dim is not None:
        if args.dim < 1:
            raise ValueError(f"--dim {args.dim} must be a positive number of parameters")
        x0 = np.zeros(args.dim)
    else:
        raise ValueError("give --dim N (start at zeros) or --x0 FILE (the start point)")
    options = dict(_option(item) for item in args.set)
    if args.batch_size is not None:
        options["batch_size"] = args.batch_size
    config = preset(args.preset, **options)
    return make_settings(x0, args.sigma, args.lower, args.upper, args.budget, args.seed, config, {})


def _option(item: str) -> tuple[str, Any]:
    key, equals, text = item.partition("=")
    if not equals or not key:
        raise ValueError(f"--set {item!r} must look like KEY=VALUE, e.g. --set lr=0.2")
    try:
        return key, json.loads(text)
    except json.JSONDecodeError:
        return key, text  # a bare word: a string option such as estimator=es


# ------------------------------------------------------------------------------- run
def _run(args: argparse.Namespace, program: list[str]) -> int:
    if not program:
        raise ValueError(
            "give the program after --, e.g. zg-asktell run --dim 3 --budget 100 -- ./simulate {params}"
        )
    if args.workers < 1:
        raise ValueError(f"--workers {args.workers} must be at least 1")
    settings = _settings(args)
    path = Path(args.dir)
    command = Command(
        program,
        params_format=args.format,
        loss_from=args.loss_from,
        timeout=args.timeout,
        workdir=str(path / "work"),
    )
    if not path.exists():
        RunDir.create(path, settings, args.format)
    elif not args.resume:
        raise ValueError(f"{args.dir!r} already exists: add --resume to continue it, or choose another --dir")
    executor = ThreadPoolExecutor(args.workers) if args.workers > 1 else None
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = minimize(
                command,
                settings["x0"],
                settings["sigma"],
                budget=settings["budget"],
                executor=executor,
                lower=settings["lower"],
                upper=settings["upper"],
                config=ZeroGradsConfig.from_dict(settings["config"]),
                seed=settings["seed"],
                retries=args.retries,
                run_dir=path,
                resume=True,
                progress=not args.quiet,
            )
    except KeyboardInterrupt:
        stop_running()
        print(f"{PROG}: interrupted; continue with the same command and --resume", file=sys.stderr)
        return 130
    finally:
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        signal.signal(signal.SIGTERM, previous)
    for warning in caught:  # the warning that every evaluation failed is this command's error
        kind = "error" if issubclass(warning.category, FailedRunWarning) else "warning"
        print(f"{PROG}: {kind}: {warning.message}", file=sys.stderr)
    if any(issubclass(warning.category, FailedRunWarning) for warning in caught):
        return 1
    run = RunDir.open(path)
    print(
        f"best loss {result.best_loss:.10g} after {result.evaluations} evaluations "
        f"({result.n_failed} failed); best point: {run.best_path}"
    )
    return 0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# ----------------------------------------------------------------------- file protocol
def _init(args: argparse.Namespace, program: list[str]) -> int:
    settings = _settings(args)
    path = Path(args.dir)
    if path.exists():
        run = RunDir.open(path)
        run.check_settings(settings)
        if run.params_format != args.format:
            raise ValueError(f"{args.dir!r} writes {run.params_format} files, not {args.format}")
        print(f"{PROG}: {args.dir!r} already exists with these settings; nothing to do", file=sys.stderr)
    else:
        RunDir.create(path, settings, args.format)
    print(path)
    return 0


def _ask(args: argparse.Namespace, program: list[str]) -> int:
    run = RunDir.open(args.dir)
    with run.lock(LOCK_WAIT):
        optimizer = run.load_optimizer()
        batch = ask_batch(optimizer)
        if batch is None:
            print(
                f"{PROG}: the budget of {optimizer.budget} evaluations is spent; see `{PROG} status`",
                file=sys.stderr,
            )
            return 0
        about_path = run.batch_file(batch.index, "batch.json")
        if not about_path.is_file():  # asking again rewrites nothing
            about_path.parent.mkdir(parents=True, exist_ok=True)
            params = f"params.{run.params_format}"
            write_params(run.batch_file(batch.index, params), batch.X, run.params_format)
            about = {"batch": batch.index, "first": batch.first, "size": len(batch.X), "params": params}
            replace_atomically(about_path, lambda tmp: tmp.write_text(json.dumps(about) + "\n"))
    print(batch.index)
    return 0


def _tell(args: argparse.Namespace, program: list[str]) -> int:
    run = RunDir.open(args.dir)
    losses_path = Path(args.losses) if args.losses else run.batch_file(args.batch, "losses.txt")
    with run.lock(LOCK_WAIT):
        optimizer = run.load_optimizer()
        size, budget, upcoming = optimizer.config.batch_size, optimizer.budget or 0, _upcoming(optimizer)
        if 0 <= args.batch < upcoming:
            return _tell_again(run, args.batch, losses_path, size, budget)
        if args.batch != upcoming or not run.batch_file(args.batch, "batch.json").is_file():
            raise ValueError(
                f"batch {args.batch} was never asked; the next batch is {upcoming}: "
                f"`{PROG} ask --dir {args.dir}` writes it"
            )
        batch = ask_batch(optimizer)
        if batch is None:
            raise ValueError(f"the budget of {budget} evaluations is spent; nothing to tell")
        outcomes = read_losses(losses_path, len(batch.X))
        logged = run.logged(batch)  # a tell interrupted after logging part of the batch
        _check_same(batch.index, {row: o.loss for row, o in logged.finals.items()}, outcomes)
        for row, outcome in enumerate(outcomes):
            if row not in logged.finals:
                run.append(record(batch, row, logged.attempts.get(row, 0) + 1, True, outcome))
        optimizer.tell(batch.X, [outcome.loss for outcome in outcomes])
        run.checkpoint(optimizer)
    failed = sum(not outcome.ok for outcome in outcomes)
    print(
        f"batch {batch.index} told: {len(outcomes)} losses ({failed} failed); "
        f"{optimizer.evaluations}/{budget} evaluations, best loss {optimizer.best_loss:.10g}"
    )
    if optimizer.n_failed == optimizer.evaluations:
        print(
            f"{PROG}: warning: every one of the {optimizer.evaluations} evaluations told so far failed; "
            f"their reasons are in {run.log_path}: check the evaluation of one row by hand",
            file=sys.stderr,
        )
    return 0


def _upcoming(optimizer: ZeroGrads) -> int:
    """The number of the next batch to ask: every batch before it is told."""
    return -(-optimizer.n_asked // optimizer.config.batch_size)


def _tell_again(run: RunDir, index: int, losses_path: Path, size: int, budget: int) -> int:
    """A batch told before: the same losses change nothing, different ones are an error."""
    first = index * size
    count = min(size, budget - first)
    told = {item["id"] - first: item["loss"] for item in run.batch_records(first, count) if item["final"]}
    _check_same(index, told, read_losses(losses_path, count))
    print(f"{PROG}: batch {index} was already told with these losses; nothing changed", file=sys.stderr)
    return 0


def _check_same(index: int, told: dict[int, float | None], outcomes: list[Outcome]) -> None:
    for row, loss in sorted(told.items()):
        if loss != outcomes[row].loss:
            raise ValueError(
                f"batch {index} row {row} was already told with loss {loss} but the file says "
                f"{outcomes[row].loss}; the first tell stands (a batch counts once)"
            )


# ---------------------------------------------------------------------------- reading
def _status(args: argparse.Namespace, program: list[str]) -> int:
    run = RunDir.open(args.dir)
    optimizer = run.load_optimizer()
    records = run.records()
    finals = [item for item in records if item["final"]]
    size, budget, upcoming = optimizer.config.batch_size, optimizer.budget or 0, _upcoming(optimizer)
    if optimizer.evaluations >= budget:
        state = "done: the budget is spent"
        if optimizer.n_failed == optimizer.evaluations:
            state += ", and every evaluation failed"
    elif run.batch_file(upcoming, "batch.json").is_file():
        state = f"batch {upcoming} is asked and waits for its losses"
    else:
        state = f"batch {upcoming} is next"
    info = {
        "run": str(run.path),
        "dimension": optimizer.dim,
        "budget": budget,
        "batch_size": size,
        "evaluations": optimizer.evaluations,
        "state": state,
        "best_loss": optimizer.best_loss if math.isfinite(optimizer.best_loss) else None,
        "best_point": str(run.best_path) if run.best_path.exists() else None,
        "failed": dict(sorted(Counter(item["status"] for item in finals if item["status"] != "ok").items())),
        "retried_attempts": len(records) - len(finals),
        "surrogate_explained": optimizer.surrogate_explained,
        "sigma": float(np.median(optimizer.sigma)),
        "step_size": float(np.median(optimizer.step_size)),
    }
    if args.json:
        print(json.dumps(info))
    else:
        for key, value in info.items():
            print(f"{key.replace('_', ' ') + ':':<21}{value}")
    return 0


def _plot(args: argparse.Namespace, program: list[str]) -> int:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError(f"`{PROG} plot` needs matplotlib: pip install matplotlib") from None
    run = RunDir.open(args.dir)
    finals = sorted((item for item in run.records() if item["final"]), key=lambda item: item["id"])
    if not finals:
        raise ValueError(f"{args.dir!r} has no evaluations yet; nothing to plot")
    ids = np.array([item["id"] for item in finals])
    losses = np.array([np.nan if item["loss"] is None else item["loss"] for item in finals])
    ok = np.isfinite(losses)
    figure, (curve, path, control) = plt.subplots(1, 3, figsize=(17, 4.5))
    curve.scatter(ids[ok], losses[ok], s=6, alpha=0.4, label="evaluation")
    curve.step(ids[ok], np.minimum.accumulate(losses[ok]), where="post", color="black", label="best so far")
    if (~ok).any():
        floor = np.min(losses[ok]) if ok.any() else 0.0
        curve.scatter(ids[~ok], np.full((~ok).sum(), floor), marker="x", color="red", label="failed")
    if ok.any() and np.all(losses[ok] > 0):
        curve.set_yscale("log")
    curve.set(xlabel="evaluation", ylabel="loss", title="loss")
    curve.legend()
    ends, centres = _batch_centres(finals)
    shown = np.argsort(-np.ptp(centres, axis=0))[:8]
    for coordinate in sorted(shown):
        path.plot(ends, centres[:, coordinate], label=f"x[{coordinate}]")
    path.set(xlabel="evaluation", ylabel="value", title="parameter trajectory (batch means)")
    path.legend(fontsize="small")
    history = run.load_optimizer().history
    control.plot(history[:, 0], history[:, 1], label="sigma")
    control.plot(history[:, 0], history[:, 2], label="step size")
    ylabel = "parameter units (geometric mean)"
    control.set(xlabel="evaluation", ylabel=ylabel, yscale="log", title="sigma and step")
    control.legend(fontsize="small")
    figure.tight_layout()
    out = Path(args.out) if args.out else run.path / "plot.png"
    figure.savefig(out, dpi=100)
    plt.close(figure)
    print(out)
    return 0


def _batch_centres(finals: list[dict[str, Any]]) -> tuple[FloatArray, FloatArray]:
    """Evaluations done at each batch's end, and each batch's mean candidate (its sampling centre)."""
    batches: dict[int, list[list[float]]] = {}
    for item in finals:
        batches.setdefault(item["batch"], []).append(item["x"])
    ends = np.cumsum([len(rows) for _, rows in sorted(batches.items())])
    centres = np.array([np.mean(rows, axis=0) for _, rows in sorted(batches.items())])
    return ends.astype(np.float64), centres


# ------------------------------------------------------------------------------- demo
def _demo(args: argparse.Namespace, program: list[str]) -> int:
    from .demo import main as run_demo

    run_demo(budget=args.budget, discs=args.discs, seed=args.seed, out=args.out)
    return 0
