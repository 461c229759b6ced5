"""``minimize``: the ask/tell loop, executors, the failure policy, run directories and resume."""

from __future__ import annotations

import doctest
import json
import os
import random
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import zg_asktell._minimize
from zg_asktell import MinimizeResult, ZeroGrads, minimize
from zg_asktell.problems import QuantizedQuadratic
from zg_asktell.runs import EvaluationFailed, RunDir

SMALL: dict[str, Any] = {"batch_size": 6, "hidden_width": 8, "hidden_layers": 1, "encoding_frequencies": 1}
X0 = np.linspace(-1.0, 1.0, 4)


def staircase(x: np.ndarray) -> float:
    return float(np.sum(np.round(2 * x) ** 2) + 0.3 * np.sum(x))


def jittery(x: np.ndarray) -> float:
    """The staircase, finishing in a random order when run in parallel."""
    time.sleep(random.uniform(0, 0.004))
    return staircase(x)


def faulty(x: np.ndarray) -> Any:
    """Fails in every way the policy knows, chosen by the candidate (the same every run)."""
    kind = int(abs(x[0]) * 1e6) % 7
    if kind == 0:
        raise RuntimeError("solver diverged")
    if kind == 1:
        return float("nan")
    if kind == 2:
        return None
    if kind == 3:
        return "garbage"
    if kind == 4:
        raise EvaluationFailed("timeout", "took too long")
    return staircase(x)


class Crash(BaseException):
    """Stands for a kill: escapes every handler of the loop."""


def crashing_after(n: int) -> Any:
    calls = 0

    def fn(x: np.ndarray) -> Any:
        nonlocal calls
        calls += 1
        if calls > n:
            raise Crash
        return faulty(x)

    return fn


def run(**kwargs: Any) -> MinimizeResult:
    arguments: dict[str, Any] = {"budget": 36, "seed": 3, "progress": False, **SMALL, **kwargs}
    fn = arguments.pop("fn", staircase)
    return minimize(fn, X0, 0.5, **arguments)


def records(path: Path) -> list[dict[str, Any]]:
    """The run log without its timing fields, ordered by evaluation and attempt."""
    items = [json.loads(line) for line in (path / "log.jsonl").read_text().splitlines()]
    for item in items:
        del item["time"], item["seconds"]
    return sorted(items, key=lambda item: (item["id"], item["attempt"]))


def same_result(a: MinimizeResult, b: MinimizeResult) -> None:
    assert a.best_loss == b.best_loss and a.evaluations == b.evaluations and a.n_failed == b.n_failed
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.optimizer.theta, b.optimizer.theta)


def test_minimize_improves_and_reports() -> None:
    start = staircase(X0)
    result = run(budget=120)
    assert isinstance(result, MinimizeResult)
    assert result.evaluations == 120 and result.n_failed == 0 and result.run_dir is None
    assert result.best_loss < start and result.best_loss == staircase(result.best_x)
    np.testing.assert_array_equal(result.x, result.optimizer.recommend())


def test_minimize_docstring_example() -> None:
    outcome = doctest.testmod(zg_asktell._minimize)
    assert outcome.attempted > 0 and outcome.failed == 0


def test_budget_not_a_multiple_of_the_batch() -> None:
    result = run(budget=17)
    assert result.evaluations == 17


def test_thread_pool_gives_the_in_process_result() -> None:
    with ThreadPoolExecutor(3) as pool:
        parallel = run(fn=jittery, executor=pool)
    same_result(parallel, run())


def test_process_pool_evaluates_in_other_processes() -> None:
    problem = QuantizedQuadratic.make(4, seed=0)
    with ProcessPoolExecutor(2) as pool:
        parallel = minimize(problem, problem.x0, budget=24, seed=1, executor=pool, progress=False, **SMALL)
    local = minimize(problem, problem.x0, budget=24, seed=1, progress=False, **SMALL)
    same_result(parallel, local)


def test_failures_are_recorded_with_their_reason_and_told_as_failed(tmp_path: Path) -> None:
    result = run(fn=faulty, run_dir=tmp_path / "run")
    finals = [item for item in records(tmp_path / "run") if item["final"]]
    assert [item["id"] for item in finals] == list(range(36))
    statuses = {item["status"] for item in finals}
    assert statuses == {"ok", "error", "nonfinite", "output", "timeout"}
    reasons = {item["status"]: item["reason"] for item in finals}
    assert reasons["error"] == "RuntimeError: solver diverged"
    assert reasons["timeout"] == "took too long"
    assert "garbage" in reasons["output"]
    assert all(item["loss"] is None for item in finals if item["status"] != "ok")
    assert result.n_failed == sum(item["status"] != "ok" for item in finals) > 0
    assert result.evaluations == 36


@pytest.mark.parametrize("kind", [np.float32, np.array, torch.tensor, int])
def test_any_real_number_is_a_loss(kind: Any) -> None:
    result = run(fn=lambda x: kind(round(staircase(x))), budget=12)
    assert result.n_failed == 0 and np.isfinite(result.best_loss)


def test_retries_then_failure(tmp_path: Path) -> None:
    tries: dict[bytes, int] = {}

    def flaky(x: np.ndarray) -> Any:
        key = x.tobytes()
        tries[key] = tries.get(key, 0) + 1
        if int(abs(x[1]) * 1e6) % 3 == 0:
            raise OSError("license server down")  # always fails
        if tries[key] == 1 and int(abs(x[2]) * 1e6) % 2 == 0:
            raise OSError("node lost")  # fails once
        return staircase(x)

    result = run(fn=flaky, retries=2, run_dir=tmp_path / "run")
    items = records(tmp_path / "run")
    by_id: dict[int, list[dict[str, Any]]] = {}
    for item in items:
        by_id.setdefault(item["id"], []).append(item)
    for attempts in by_id.values():
        assert [a["attempt"] for a in attempts] == list(range(1, len(attempts) + 1))
        assert [a["final"] for a in attempts] == [False] * (len(attempts) - 1) + [True]
        final = attempts[-1]
        assert final["status"] == "ok" or len(attempts) == 3
    assert any(len(a) == 2 and a[-1]["status"] == "ok" for a in by_id.values())
    assert result.n_failed == sum(a[-1]["status"] != "ok" for a in by_id.values()) > 0


def test_run_dir_log_and_checkpoint(tmp_path: Path) -> None:
    result = run(run_dir=tmp_path / "run")
    items = records(tmp_path / "run")
    assert [item["id"] for item in items] == list(range(36))
    assert all(item["batch"] == item["id"] // 6 and item["attempt"] == 1 for item in items)
    assert all(item["loss"] == staircase(np.array(item["x"])) for item in items)
    resumed = ZeroGrads.load(tmp_path / "run" / "state.pt")
    assert resumed.evaluations == 36 and resumed.best_loss == result.best_loss
    torch.load(tmp_path / "run" / "state.pt", weights_only=True)
    best = np.loadtxt(tmp_path / "run" / "best.csv", delimiter=",")
    np.testing.assert_array_equal(best, result.best_x)


@pytest.mark.parametrize("crash_after", [1, 13, 20, 35])
def test_resume_after_a_crash_matches_an_uninterrupted_run(tmp_path: Path, crash_after: int) -> None:
    reference = run(fn=faulty, retries=1, run_dir=tmp_path / "whole")
    with pytest.raises(Crash):
        run(fn=crashing_after(crash_after), retries=1, run_dir=tmp_path / "cut")
    resumed = run(fn=faulty, retries=1, run_dir=tmp_path / "cut", resume=True)
    same_result(resumed, reference)
    assert records(tmp_path / "cut") == records(tmp_path / "whole")


def test_resume_of_a_finished_run_evaluates_nothing(tmp_path: Path) -> None:
    first = run(run_dir=tmp_path / "run")

    def never(x: np.ndarray) -> float:
        raise AssertionError("a finished run evaluated again")

    again = run(fn=never, run_dir=tmp_path / "run", resume=True)
    same_result(again, first)


def test_resume_starts_a_missing_run(tmp_path: Path) -> None:
    same_result(run(run_dir=tmp_path / "new", resume=True), run())


def test_existing_run_dir_without_resume_is_refused(tmp_path: Path) -> None:
    run(run_dir=tmp_path / "run", budget=6)
    with pytest.raises(ValueError, match="already exists: resume it"):
        run(run_dir=tmp_path / "run", budget=6)


def test_resume_with_other_settings_names_them(tmp_path: Path) -> None:
    run(run_dir=tmp_path / "run", budget=6)
    with pytest.raises(ValueError, match="different budget, seed"):
        run(run_dir=tmp_path / "run", budget=12, seed=4, resume=True)


def test_a_run_in_use_is_refused(tmp_path: Path) -> None:
    run(run_dir=tmp_path / "run", budget=6)
    with RunDir.open(tmp_path / "run").lock():
        with pytest.raises(RuntimeError, match="in use by another zg-asktell process"):
            run(run_dir=tmp_path / "run", budget=6, resume=True)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"fn": 3}, TypeError, "fn must be callable"),
        ({"executor": "pool"}, TypeError, "concurrent.futures.Executor"),
        ({"retries": -1}, ValueError, "retries=-1"),
        ({"resume": True}, ValueError, "resume=True needs run_dir"),
        ({"budget": 0}, ValueError, "budget=0"),
        ({"lr": -1.0}, ValueError, "lr=-1.0"),
    ],
)
def test_bad_arguments_name_the_value(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        run(**kwargs)


class _Payload:
    """Unpickling it would create a file: a checkpoint must never run it."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("damage", ["truncate", "foreign", "pickle"])
def test_corrupt_or_foreign_checkpoint_is_a_clear_error(tmp_path: Path, damage: str) -> None:
    run(run_dir=tmp_path / "run", budget=6)
    state = tmp_path / "run" / "state.pt"
    marker = tmp_path / "executed"
    if damage == "truncate":
        state.write_bytes(state.read_bytes()[:100])
    elif damage == "foreign":
        torch.save({"weights": torch.zeros(3)}, state)
    else:
        torch.save({"format": _Payload(str(marker))}, state)
    with pytest.raises(ValueError, match="ZeroGrads"):
        run(run_dir=tmp_path / "run", budget=6, resume=True)
    assert not marker.exists()


def test_foreign_run_directory_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    with pytest.raises(ValueError, match="not a zg-asktell run directory"):
        run(run_dir=tmp_path / "run", resume=True)
    (tmp_path / "run" / "run.json").write_text("{not json")
    with pytest.raises(ValueError, match="run.json' is corrupt"):
        run(run_dir=tmp_path / "run", resume=True)
    (tmp_path / "run" / "run.json").write_text('{"format": "zg_asktell.run/1"}')
    with pytest.raises(ValueError, match="run.json' is not a zg-asktell run description"):
        run(run_dir=tmp_path / "run", resume=True)


def test_torn_last_log_line_is_dropped_and_a_corrupt_one_is_an_error(tmp_path: Path) -> None:
    reference = run(fn=faulty, run_dir=tmp_path / "whole")
    with pytest.raises(Crash):
        run(fn=crashing_after(8), run_dir=tmp_path / "cut")
    log = tmp_path / "cut" / "log.jsonl"
    with open(log, "a") as file:
        file.write('{"id": 8, "batch": 1, "att')  # a write cut by a kill
    same_result(run(fn=faulty, run_dir=tmp_path / "cut", resume=True), reference)
    assert records(tmp_path / "cut") == records(tmp_path / "whole")
    lines = log.read_text().splitlines()
    lines[3] = "garbage"
    log.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="line 4 of the run log is not valid JSON"):
        RunDir.open(tmp_path / "cut").records()


def test_a_log_from_another_run_is_detected(tmp_path: Path) -> None:
    with pytest.raises(Crash):
        run(fn=crashing_after(3), run_dir=tmp_path / "a")
    run(run_dir=tmp_path / "b", seed=9, budget=6)
    os.replace(tmp_path / "b" / "log.jsonl", tmp_path / "a" / "log.jsonl")
    with pytest.raises(ValueError, match="belong to different runs"):
        run(run_dir=tmp_path / "a", resume=True)
