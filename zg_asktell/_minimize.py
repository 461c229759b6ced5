"""``minimize``: the whole ask/tell loop around any objective, in parallel, resumable."""

from __future__ import annotations

import contextlib
import ctypes
import math
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from ._config import ZeroGradsConfig, is_integer
from ._optimizer import ZeroGrads
from .runs import (
    Abandoned,
    Batch,
    EvaluationFailed,
    Logged,
    Outcome,
    PathLike,
    RunDir,
    ask_batch,
    make_settings,
    optimizer_from,
    record,
)

FloatArray = npt.NDArray[np.float64]
Objective = Callable[[FloatArray], Any]


class FailedRunWarning(RuntimeWarning):
    """Issued by :func:`minimize` when every evaluation of the run failed."""


@dataclass(frozen=True)
class MinimizeResult:
    """What :func:`minimize` found.

    Attributes:
        x: the optimizer's recommendation (see ``recommendation``: theta or the best point).
        best_x: the best evaluated point (None if every evaluation failed).
        best_loss: its loss (inf if every evaluation failed).
        evaluations: evaluations told, failed ones included.
        n_failed: evaluations told as failed (after their retries).
        optimizer: the optimizer itself, to continue or inspect.
        run_dir: the run directory, when one was used.
    """

    x: FloatArray
    best_x: FloatArray | None
    best_loss: float
    evaluations: int
    n_failed: int
    optimizer: ZeroGrads
    run_dir: Path | None


def minimize(
    fn: Objective,
    x0: npt.ArrayLike,
    sigma: npt.ArrayLike | None = None,
    *,
    budget: int,
    executor: Executor | None = None,
    lower: npt.ArrayLike | None = None,
    upper: npt.ArrayLike | None = None,
    config: ZeroGradsConfig | None = None,
    seed: int | None = None,
    retries: int = 0,
    timeout: float | None = None,
    run_dir: PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    **options: Any,
) -> MinimizeResult:
    """Minimize ``fn`` with :class:`ZeroGrads` for ``budget`` evaluations.

    Each batch is evaluated through ``executor`` (any ``concurrent.futures.Executor``:
    a process pool, ``client.get_executor()`` of a Dask cluster...; default: one at a
    time in this process). An evaluation that raises, returns a non-number or NaN/inf,
    or raises :class:`~zg_asktell.runs.EvaluationFailed` is retried up to ``retries``
    times, then told to the optimizer as failed; the run goes on. Each attempt is
    submitted as a distinct task, so executors that cache results (Dask's ``pure=True``)
    really run a retry again. A run in which every evaluation failed ends with a
    :class:`FailedRunWarning` (a ``RuntimeWarning``) naming the commonest reason.

    With ``run_dir``, every attempt is appended to ``run_dir/log.jsonl`` and the state is
    checkpointed atomically after each batch; ``resume=True`` continues an interrupted
    run (or starts it when the directory does not exist) and ends exactly where an
    uninterrupted run with the same arguments ends, for a deterministic ``fn``.

    Args:
        fn: objective, called as ``fn(x)`` on a float64 vector; must be picklable for
            executors in other processes.
        x0, sigma, lower, upper, budget, config, seed, options: as for :class:`ZeroGrads`.
        executor: where evaluations run; the loop submits a batch and waits for it.
        retries: re-evaluations of a failed candidate before it counts as failed.
        timeout: seconds one evaluation may take (None: no limit). ``fn`` then runs in a
            thread of its own where the executor runs it; past the limit the attempt fails
            with status ``"timeout"``, the worker moves on, and :class:`~zg_asktell.runs.Abandoned`
            is raised inside the abandoned call, which stops it at its next Python
            instruction (a call blocked in C runs on until it returns; its result is ignored).
        run_dir: directory of the run's log and checkpoints (see docs/external.md).
        resume: continue ``run_dir`` if it exists (its settings must match).
        progress: show a tqdm progress bar with the best loss.

    Example:
        >>> import numpy as np
        >>> result = minimize(lambda x: float(np.sum(np.round(x) ** 2)), np.full(5, 3.0),
        ...                   budget=800, seed=0, progress=False)
        >>> result.best_loss < 10.0
        True
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable (the objective), got {type(fn).__name__}")
    if executor is not None and not isinstance(executor, Executor):
        raise TypeError(
            f"executor must be a concurrent.futures.Executor (e.g. ProcessPoolExecutor(), or "
            f"client.get_executor() for Dask), got {type(executor).__name__}"
        )
    if not is_integer(retries) or retries < 0:
        raise ValueError(f"retries={retries!r} must be a non-negative integer (re-evaluations of a failure)")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout < math.inf
    ):
        raise ValueError(f"timeout={timeout!r} must be a positive number of seconds or None (no limit)")
    if not isinstance(resume, bool):
        raise TypeError(f"resume={resume!r} must be True or False")
    if resume and run_dir is None:
        raise ValueError("resume=True needs run_dir: the directory of the run to continue")
    settings = make_settings(x0, sigma, lower, upper, budget, seed, config, options)
    run = _run_dir(run_dir, settings, resume)
    with run.lock() if run else contextlib.nullcontext():
        optimizer = run.load_optimizer() if run else optimizer_from(settings)
        reasons = _loop(optimizer, _Evaluation(fn, timeout), executor, int(retries), run, progress)
    if optimizer.evaluations and optimizer.n_failed == optimizer.evaluations:
        warnings.warn(_all_failed(optimizer.evaluations, reasons, run), FailedRunWarning, stacklevel=2)
    return MinimizeResult(
        x=optimizer.recommend(),
        best_x=optimizer.best_x,
        best_loss=optimizer.best_loss,
        evaluations=optimizer.evaluations,
        n_failed=optimizer.n_failed,
        optimizer=optimizer,
        run_dir=None if run is None else run.path,
    )


def _run_dir(path: PathLike | None, settings: dict[str, Any], resume: bool) -> RunDir | None:
    if path is None:
        return None
    if resume and Path(path).exists():
        run = RunDir.open(path)
        run.check_settings(settings)
        return run
    return RunDir.create(path, settings)


def _all_failed(evaluations: int, reasons: Counter[str], run: RunDir | None) -> str:
    """The message of a run in which every evaluation failed."""
    where = f"; every attempt's reason is in {str(run.log_path)!r}" if run else ""
    common = f" (most often {reasons.most_common(1)[0][0]})" if reasons else ""
    return (
        f"every one of the {evaluations} evaluations failed{common}: nothing was learned and "
        f"best_x is None{where}. Check the objective on x0 by hand before running again"
    )


def _loop(
    optimizer: ZeroGrads,
    fn: _Evaluation,
    executor: Executor | None,
    retries: int,
    run: RunDir | None,
    progress: bool,
) -> Counter[str]:
    """Evaluate and tell batches until the budget is spent; the failures' reasons, counted."""
    bar = tqdm(total=optimizer.budget, initial=optimizer.evaluations, unit="eval", disable=not progress)
    best = optimizer.best_loss
    reasons: Counter[str] = Counter()

    def done(outcome: Outcome) -> None:
        nonlocal best
        if outcome.loss is None:
            reasons[f"{outcome.status}: {outcome.reason}"] += 1
        elif outcome.loss < best:
            best = outcome.loss
            bar.set_postfix(best=f"{best:.6g}", refresh=False)
        bar.update(1)

    with bar:
        while (batch := ask_batch(optimizer)) is not None:
            logged = run.logged(batch) if run else Logged({}, {})
            losses = _evaluate(fn, batch, executor, retries, logged, run, done)
            optimizer.tell(batch.X, losses)
            if run:
                run.checkpoint(optimizer)
    return reasons


def _evaluate(
    fn: _Evaluation,
    batch: Batch,
    executor: Executor | None,
    retries: int,
    logged: Logged,
    run: RunDir | None,
    done: Callable[[Outcome], None],
) -> list[float | None]:
    """Losses of every row: logged finals reused, the rest evaluated with retries."""
    losses = {row: outcome.loss for row, outcome in logged.finals.items()}
    attempts = dict(logged.attempts)
    for outcome in logged.finals.values():
        done(outcome)

    def settle(row: int, outcome: Outcome) -> bool:
        """Log an attempt; True when the row must be tried again."""
        attempts[row] = attempts.get(row, 0) + 1
        final = outcome.ok or attempts[row] > retries
        if run:
            run.append(record(batch, row, attempts[row], final, outcome))
        if final:
            losses[row] = outcome.loss
            done(outcome)
        return not final

    def submit(row: int) -> Future[Outcome]:
        assert executor is not None
        # The evaluation id and attempt number make every submission distinct: an executor
        # that caches results by argument (Dask's pure=True) would otherwise hand a retry
        # the first attempt's failure, and two equal rows one shared evaluation.
        tag = (batch.first + row, attempts.get(row, 0) + 1)
        return executor.submit(fn, batch.X[row], tag)

    todo = [row for row in range(len(batch.X)) if row not in losses]
    if executor is None:
        for row in todo:
            while settle(row, fn(batch.X[row].copy())):
                pass
    else:
        pending = {submit(row): row for row in todo}
        try:
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in sorted(finished, key=pending.__getitem__):
                    row = pending.pop(future)
                    if settle(row, _collect(future)):
                        pending[submit(row)] = row
        finally:
            for future in pending:
                future.cancel()
    return [losses[row] for row in range(len(batch.X))]


@dataclass(frozen=True)
class _Evaluation:
    """One attempt at ``fn(x)`` under the failure policy and ``timeout`` (runs where the executor runs)."""

    fn: Objective
    timeout: float | None

    def __call__(self, x: FloatArray, tag: tuple[int, int] | None = None) -> Outcome:
        """The outcome of ``fn(x)``; ``tag`` (evaluation id, attempt) only keeps submissions distinct."""
        if self.timeout is None:
            return _attempt(self.fn, x)
        call = _Call(self.fn, x)
        thread = threading.Thread(target=call.run, name="zg-asktell evaluation", daemon=True)
        thread.start()
        try:
            thread.join(self.timeout)
        finally:
            call.abandon(thread)  # past the limit, or this thread interrupted
        if call.escaped is not None:  # a BaseException (KeyboardInterrupt...) goes on as without a timeout
            raise call.escaped
        if call.outcome is not None:
            return call.outcome
        reason = f"no result after {self.timeout:g} s; the call was abandoned"
        return Outcome("timeout", reason=reason, seconds=self.timeout)


class _Call:
    """``fn(x)`` run in a thread that can be abandoned: its outcome, once it has one."""

    def __init__(self, fn: Objective, x: FloatArray) -> None:
        self.fn, self.x = fn, x
        self.outcome: Outcome | None = None
        self.escaped: BaseException | None = None
        self._finished = False
        self._lock = threading.Lock()  # held while finishing, and while abandoning

    def run(self) -> None:
        with contextlib.suppress(Abandoned):  # also one that arrives while finishing
            self._run()

    def _run(self) -> None:
        outcome, escaped = None, None
        try:
            outcome = _attempt(self.fn, self.x)
        except Abandoned:
            pass
        except BaseException as error:  # handed to the waiting thread
            escaped = error
        finally:
            with self._lock:
                self.outcome, self.escaped, self._finished = outcome, escaped, True

    def abandon(self, thread: threading.Thread) -> None:
        """Raise :class:`Abandoned` in ``thread`` unless the call has finished.

        Under the lock the thread cannot finish, so its id cannot pass to a new thread
        before the exception is set (CPython's async exception, at its next instruction).
        """
        with self._lock:
            if not self._finished and thread.ident is not None:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(thread.ident), ctypes.py_object(Abandoned)
                )


def _attempt(fn: Objective, x: FloatArray) -> Outcome:
    """One evaluation of ``fn(x)`` judged by the failure policy."""
    start = time.perf_counter()
    try:
        value = fn(x)
    except EvaluationFailed as failure:
        return Outcome(failure.status, reason=failure.reason, seconds=time.perf_counter() - start)
    except Exception as error:
        return Outcome("error", reason=_describe(error), seconds=time.perf_counter() - start)
    seconds = time.perf_counter() - start
    if value is None:
        return Outcome("nonfinite", reason="returned None", seconds=seconds)
    try:
        if isinstance(value, bool | np.bool_ | str | bytes):
            raise TypeError
        loss = float(value)  # Python and numpy numbers, 0-d arrays and tensors
    except (TypeError, ValueError):
        reason = f"returned {value!r:.80} ({type(value).__name__}), not a number"
        return Outcome("output", reason=reason, seconds=seconds)
    if not math.isfinite(loss):
        return Outcome("nonfinite", reason=f"returned {loss}", seconds=seconds)
    return Outcome("ok", loss=loss, seconds=seconds)


def _collect(future: Future[Outcome]) -> Outcome:
    """The future's outcome; an executor-level failure (a lost worker...) is an ``error``."""
    try:
        return future.result()
    except Exception as error:
        return Outcome("error", reason=f"the executor failed: {_describe(error)}")


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:500]
