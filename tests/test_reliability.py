"""The faults a long real run meets (issue 16): each handled, with nothing lost.

Hung objectives, runs in which everything fails, placeholders in paths, unreadable
losses files, tampered run directories and checkpoints, and the messages of bad inputs.
The soak test on a Dask cluster is in the slow suite (test_dask.py).
"""

from __future__ import annotations

import json
import pickle
import sys
import threading
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from zg_asktell import minimize
from zg_asktell.cli import main
from zg_asktell.command import Command
from zg_asktell.runs import Abandoned

SIMS = Path(__file__).resolve().parent / "sims"
SMALL: dict[str, Any] = {"batch_size": 6, "hidden_width": 8, "hidden_layers": 1, "encoding_frequencies": 1}
CLI_SMALL = ["--batch-size", "8", "--set", "hidden_width=8", "--set", "hidden_layers=1"]
X0 = np.linspace(-1.0, 1.0, 4)


def staircase(x: np.ndarray) -> float:
    return float(np.sum(np.round(2 * x) ** 2) + 0.3 * np.sum(x))


def hangs(x: np.ndarray) -> bool:
    """One candidate in four, chosen by its value (the same every run)."""
    return int(abs(x[0]) * 1e6) % 4 == 0


class Spinning:
    """A staircase that spins forever in Python on hanging candidates, counting its spins."""

    def __init__(self) -> None:
        self.spins = 0
        self.stopped = 0

    def __call__(self, x: np.ndarray) -> float:
        try:
            while hangs(x):
                self.spins += 1
        except Abandoned:
            self.stopped += 1
            raise
        return staircase(x)


def sleeping(x: np.ndarray) -> float:
    """Blocks in C (a sleep) far past any timeout on hanging candidates."""
    if hangs(x):
        time.sleep(60)
    return staircase(x)


def log(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


# --------------------------------------------------------------------------- timeouts
def test_a_hung_python_loop_times_out_and_is_stopped(tmp_path: Path) -> None:
    fn = Spinning()
    result = minimize(
        fn, X0, 0.5, budget=24, seed=3, timeout=0.2, run_dir=tmp_path / "run", progress=False, **SMALL
    )
    timeouts = [item for item in log(tmp_path / "run") if item["status"] == "timeout"]
    assert len(timeouts) == result.n_failed > 0 and result.evaluations == 24
    assert all(item["reason"] == "no result after 0.2 s; the call was abandoned" for item in timeouts)
    deadline = time.monotonic() + 5
    while fn.stopped < len(timeouts) and time.monotonic() < deadline:
        time.sleep(0.01)
    spins = fn.spins
    time.sleep(0.05)
    assert fn.stopped == len(timeouts) and fn.spins == spins  # every abandoned loop ended
    assert not [thread for thread in threading.enumerate() if thread.name == "zg-asktell evaluation"]


@pytest.mark.parametrize("pool", [ThreadPoolExecutor, ProcessPoolExecutor])
def test_a_call_blocked_in_c_times_out_on_every_executor(pool: Any) -> None:
    start = time.monotonic()
    with pool(2) as executor:
        result = minimize(
            sleeping,
            X0,
            0.5,
            budget=24,
            seed=3,
            timeout=0.3,
            retries=1,
            executor=executor,
            progress=False,
            **SMALL,
        )
        assert time.monotonic() - start < 30  # not one 60 s sleep waited for
        executor.shutdown(wait=False, cancel_futures=True)
    assert 0 < result.n_failed < 24 and result.evaluations == 24
    assert result.best_loss == staircase(result.best_x)


@pytest.mark.parametrize("timeout", [0, -1.0, float("inf"), float("nan"), "5", True])
def test_bad_timeout_is_refused(timeout: Any) -> None:
    with pytest.raises(ValueError, match="timeout=.* must be a positive number of seconds"):
        minimize(staircase, X0, budget=6, timeout=timeout, progress=False)


# ------------------------------------------------------------------ everything failed
def always_fails(x: np.ndarray) -> float:
    raise RuntimeError("licence server down")


def test_minimize_warns_when_every_evaluation_failed(tmp_path: Path) -> None:
    with pytest.warns(
        RuntimeWarning,
        match=r"every one of the 12 evaluations failed \(most often "
        r"error: RuntimeError: licence server down\)",
    ) as caught:
        result = minimize(always_fails, X0, budget=12, run_dir=tmp_path / "run", progress=False, **SMALL)
    assert str(tmp_path / "run" / "log.jsonl") in str(caught[0].message)
    assert result.best_x is None and result.n_failed == 12
    with pytest.warns(RuntimeWarning, match="every one of the 12"):  # resuming it says so again
        minimize(always_fails, X0, budget=12, run_dir=tmp_path / "run", resume=True, progress=False, **SMALL)


def test_a_run_where_some_evaluations_failed_does_not_warn(recwarn: pytest.WarningsRecorder) -> None:
    result = minimize(
        lambda x: staircase(x) if x[0] > -1 else None, X0, budget=12, seed=0, progress=False, **SMALL
    )
    assert 0 < result.n_failed < 12
    assert not [w for w in recwarn if "evaluations failed" in str(w.message)]


def test_cli_run_exits_1_when_every_evaluation_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", "--dir", str(tmp_path / "run"), "--dim", "2", "--budget", "16", *CLI_SMALL, "--quiet"]
    status = main([*argv, "--", sys.executable, str(SIMS / "simulate.py"), "/no/such/params.csv"])
    err = capsys.readouterr().err
    assert status == 1
    assert "error: every one of the 16 evaluations failed (most often exit: exit status 1" in err


# ---------------------------------------------------------------------- placeholders
@pytest.mark.parametrize("name", ["{loss}", "{params}", "a{params}b{loss}"])
def test_placeholders_in_the_run_directory_are_not_replaced_again(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / name
    argv = ["run", "--dir", str(run), "--dim", "2", "--budget", "16", *CLI_SMALL, "--quiet"]
    simulator = [sys.executable, str(SIMS / "simulate.py"), "{params}", "--loss-file", "{loss}"]
    assert main([*argv, "--loss-from", "file", "--", *simulator]) == 0
    assert "(0 failed)" in capsys.readouterr().out
    assert all(item["status"] == "ok" for item in log(run))


def test_command_substitutes_each_placeholder_once(tmp_path: Path) -> None:
    workdir = tmp_path / "{params}{loss}"
    command = Command(
        [sys.executable, str(SIMS / "simulate.py"), "{params}", "--loss-file", "{loss}"],
        loss_from="file",
        workdir=str(workdir),
    )
    assert command(np.array([0.5, 0.5])) == pytest.approx(0.01)


# ------------------------------------------------------------ file protocol: losses files
def asked_batch(tmp_path: Path, budget: int = 16) -> tuple[list[str], Path]:
    d = ["--dir", str(tmp_path / "run")]
    assert main(["init", *d, "--dim", "2", "--budget", str(budget), *CLI_SMALL]) == 0
    assert main(["ask", *d]) == 0
    return d, tmp_path / "run" / "batches" / "0"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("losses.txt", "1.0\n" * 3 + "oops\n" + "1.0\n" * 4, "the loss of row 3 'oops' is not a number"),
        ("losses.txt", "1.0\n" * 3 + "\n" + "1.0\n" * 4, "the loss of row 3 is empty"),
        ("losses.txt", b"\xff\xfe" * 8, "is not a readable losses file"),
        (
            "losses.json",
            '[1.0, 1.0, "oops", 1, 1, 1, 1, 1]',
            """the loss of row 2 '"oops"' is not a number""",
        ),
        ("losses.json", "[1.0, 1.0,", "is not a readable losses file"),
        ("losses.json", '{"losses": [1.0]}', "must hold a JSON list of 8 losses"),
        ("losses.npy", b"not an npy file", "is not a readable losses file"),
    ],
)
def test_an_unreadable_losses_file_changes_nothing_and_a_fixed_one_is_told(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: str | bytes, message: str
) -> None:
    d, folder = asked_batch(tmp_path)
    path = folder / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    capsys.readouterr()
    assert main(["tell", *d, "0", "--losses", str(path)]) == 1
    err = capsys.readouterr().err
    assert message in err and "tell again" in err
    assert (tmp_path / "run" / "log.jsonl").read_text() == ""
    np.save(folder / "fixed.npy", np.array([1.0, np.nan, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]))
    assert main(["tell", *d, "0", "--losses", str(folder / "fixed.npy")]) == 0
    assert "batch 0 told: 8 losses (1 failed)" in capsys.readouterr().out


# ------------------------------------------------------------- checkpoints and run dirs
def small_run(path: Path, **kwargs: Any) -> Any:
    arguments: dict[str, Any] = {"budget": 24, "seed": 3, "progress": False, **SMALL, **kwargs}
    return minimize(staircase, X0, 0.5, run_dir=path, **arguments)


def test_a_checkpoint_from_another_run_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    small_run(tmp_path / "a", budget=12)
    small_run(tmp_path / "b", budget=12, seed=4)
    (tmp_path / "b" / "state.pt").write_bytes((tmp_path / "a" / "state.pt").read_bytes())
    with pytest.raises(ValueError, match="state.pt' belongs to another run .*copied from another directory"):
        small_run(tmp_path / "b", budget=12, seed=4, resume=True)
    argv = ["run", "--dir", str(tmp_path / "c"), "--dim", "2", "--budget", "16", *CLI_SMALL, "--quiet"]
    program = ["--", sys.executable, str(SIMS / "simulate.py"), "{params}"]
    assert main([*argv, *program]) == 0
    (tmp_path / "c" / "state.pt").write_bytes((tmp_path / "a" / "state.pt").read_bytes())
    assert main([*argv, "--resume", *program]) == 1
    assert "belongs to another run" in capsys.readouterr().err


def test_every_field_of_a_checkpoint_is_checked(tmp_path: Path) -> None:
    import torch

    from zg_asktell import ZeroGrads

    opt = ZeroGrads(X0, 0.5, seed=0, **SMALL)
    for _ in range(3):
        X = opt.ask()
        opt.tell(X, [staircase(x) for x in X])
    path = tmp_path / "state.pt"
    opt.save(path)
    data = path.read_bytes()
    theta = opt.state_dict()["theta"].numpy().tobytes()
    at = data.index(theta) + 5
    path.write_bytes(data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :])  # one flipped bit
    with pytest.raises(ValueError, match="does not match its checksum: its content changed"):
        ZeroGrads.load(path)
    torch.save({"format": "zg_asktell.ZeroGrads/1"}, path)
    with pytest.raises(ValueError, match="the ZeroGrads state lacks 'adam_m', 'adam_v', .*use a backup copy"):
        ZeroGrads.load(path)
    for field, value, message in [
        ("theta", torch.zeros(5), r"'theta' has shape \(5,\), not \(4,\)"),
        ("x0", torch.zeros(2, 2), r"'x0' has shape \(2, 2\), not \(d,\)"),
        ("scale", -torch.ones(4, dtype=torch.float64), "'scale' is not positive"),
        ("best_loss", float("nan"), "'best_loss' is nan, not a number"),
        ("budget", 0, "'budget' is 0, not a positive integer"),
        ("counters", {"told": -1}, "'counters' is not a dict of non-negative integers"),
        ("pending_keys", [b"x"], "'pending_keys' is not a list of 16-byte candidate keys"),
        ("config", {"batch_size": "many"}, "'config' is invalid"),
        (
            "control",
            {"log_lr": 0.0, "log_sigma": 0.0, "log_shape": torch.zeros(3)},
            r"'log_shape' has shape \(3,\)",
        ),
    ]:
        state = opt.state_dict()
        state[field] = value
        with pytest.raises(ValueError, match=f"the ZeroGrads state's {message}"):
            ZeroGrads.from_state_dict(state)
    state = opt.state_dict()
    state["estimator"]["model"]["members.0.layers.0.weight"] = torch.zeros(3, 3)
    with pytest.raises(
        ValueError, match="'estimator' does not fit a control-variate estimator of dimension 4"
    ):
        ZeroGrads.from_state_dict(state)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "it is empty"),
        (b"hello world\n", r"torch cannot read it \(KeyError\); it was not written by ZeroGrads.save"),
        (
            pickle.dumps({"format": "x"}),
            "it holds Python objects other than tensors.*Do not load it with weights_",
        ),
    ],
    ids=["empty", "text", "pickle"],
)
def test_unreadable_save_files_say_why(tmp_path: Path, content: bytes, message: str) -> None:
    from zg_asktell import ZeroGrads

    path = tmp_path / "state.pt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f"is not a readable ZeroGrads save file: {message}") as raised:
        ZeroGrads.load(path)
    assert "weights_only=False will likely succeed" not in str(raised.value)


class Crash(BaseException):
    """Stands for a kill: escapes every handler of the loop."""


def crashing(x: np.ndarray) -> float:
    if x[0] > 0.2:
        raise Crash
    return staircase(x)


def test_a_log_record_missing_a_field_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    with pytest.raises(Crash):
        minimize(crashing, X0, 0.5, budget=24, seed=3, run_dir=run, progress=False, **SMALL)
    lines = (run / "log.jsonl").read_text().splitlines()
    item = json.loads(lines[-1])
    del item["loss"]
    (run / "log.jsonl").write_text("\n".join([*lines[:-1], json.dumps(item)]) + "\n")
    with pytest.raises(ValueError, match="the last line of the run log lacks field 'loss'"):
        minimize(staircase, X0, 0.5, budget=24, seed=3, run_dir=run, resume=True, progress=False, **SMALL)
    assert main(["status", "--dir", str(run)]) == 1
    assert f"line {len(lines)} of the run log lacks field 'loss'" in capsys.readouterr().err
    item["loss"], item["status"] = 1.0, "exit"
    (run / "log.jsonl").write_text("\n".join([*lines[:-1], json.dumps(item)]) + "\n")
    with pytest.raises(ValueError, match="has status 'exit' with loss 1.0"):
        minimize(staircase, X0, 0.5, budget=24, seed=3, run_dir=run, resume=True, progress=False, **SMALL)


def tell_batch(d: list[str], index: int) -> None:
    params = Path(d[1]) / "batches" / str(index) / "params.csv"
    losses = [staircase(x) for x in np.loadtxt(params, delimiter=",", ndmin=2)]
    (params.parent / "losses.txt").write_text("".join(f"{loss!r}\n" for loss in losses))
    assert main(["tell", *d, str(index)]) == 0 and main(["ask", *d]) == 0


def test_a_log_ahead_of_its_checkpoint_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d, _ = asked_batch(tmp_path, budget=24)
    tell_batch(d, 0)
    old = (tmp_path / "run" / "state.pt").read_bytes()
    tell_batch(d, 1)
    tell_batch(d, 2)
    (tmp_path / "run" / "state.pt").write_bytes(old)  # a checkpoint restored from a copy
    capsys.readouterr()
    assert main(["tell", *d, "1"]) == 1
    assert "runs past the checkpoint, which is at evaluation 8: state.pt is older" in capsys.readouterr().err


def test_a_stale_best_file_is_rewritten(tmp_path: Path) -> None:
    result = small_run(tmp_path / "run")
    best = tmp_path / "run" / "best.csv"
    best.write_text("9.0,9.0,9.0,9.0\n")  # what a kill before the last best write leaves
    small_run(tmp_path / "run", resume=True)
    assert np.array_equal(np.loadtxt(best, delimiter=","), result.best_x)
    best.unlink()
    assert main(["ask", "--dir", str(tmp_path / "run")]) == 0  # spent, but repairs under the lock
    assert np.array_equal(np.loadtxt(best, delimiter=","), result.best_x)


def test_links_inside_a_run_directory_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(Crash):
        minimize(crashing, X0, 0.5, budget=24, seed=3, run_dir=tmp_path / "run", progress=False, **SMALL)
    log_path, victim = tmp_path / "run" / "log.jsonl", tmp_path / "victim.txt"
    victim.write_text("precious\n")
    log_path.unlink()
    log_path.symlink_to(victim)
    with pytest.raises(ValueError, match="log.jsonl' is a symbolic link; .*does not follow links"):
        minimize(
            staircase,
            X0,
            0.5,
            budget=24,
            seed=3,
            run_dir=tmp_path / "run",
            resume=True,
            progress=False,
            **SMALL,
        )
    assert victim.read_text() == "precious\n"

    d = ["--dir", str(tmp_path / "protocol")]
    assert main(["init", *d, "--dim", "2", "--budget", "16", *CLI_SMALL]) == 0
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "protocol" / "batches").mkdir()
    (tmp_path / "protocol" / "batches" / "0").symlink_to(outside)
    capsys.readouterr()
    assert main(["ask", *d]) == 1
    assert "batches/0' is a symbolic link" in capsys.readouterr().err
    assert list(outside.iterdir()) == []


def test_every_file_of_a_run_follows_the_umask(tmp_path: Path) -> None:
    import os

    previous = os.umask(0o027)
    try:
        d, _ = asked_batch(tmp_path)
        tell_batch(d, 0)
        # the program's loss is the permission bits of its scratch directory
        probe = [
            sys.executable,
            "-c",
            "import os, sys; print(os.stat(os.path.dirname(sys.argv[1])).st_mode & 0o777)",
        ]
        loss = Command([*probe, "{params}"], workdir=str(tmp_path / "work"))(np.zeros(2))
    finally:
        os.umask(previous)
    run = tmp_path / "run"
    modes = {str(p.relative_to(run)): p.stat().st_mode & 0o777 for p in [run, *run.rglob("*")]}
    assert {mode for name, mode in modes.items() if (run / name).is_dir()} == {0o750}
    assert {mode for name, mode in modes.items() if (run / name).is_file()} == {0o640}
    assert {"state.pt", "best.csv", "log.jsonl", "batches/0/params.csv", "batches/0/batch.json"} <= set(modes)
    assert loss == 0o750


@pytest.mark.parametrize(
    "change",
    [
        lambda meta: meta.pop("id"),
        lambda meta: meta.update(id="../x"),
        lambda meta: meta["settings"].pop("seed"),
    ],
    ids=["no-id", "bad-id", "no-seed"],
)
def test_run_descriptions_are_checked(tmp_path: Path, change: Any) -> None:
    small_run(tmp_path / "run", budget=6)
    meta_path = tmp_path / "run" / "run.json"
    meta = json.loads(meta_path.read_text())
    change(meta)
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="run.json' is not a zg-asktell run description"):
        small_run(tmp_path / "run", budget=6, resume=True)


# ------------------------------------------------------------------ the core's tell
def core(**options: Any) -> Any:
    from zg_asktell import ZeroGrads

    return ZeroGrads(np.zeros(2), 0.5, lower=-1.0, upper=1.0, seed=0, **{**SMALL, "batch_size": 4, **options})


def test_a_never_asked_point_outside_the_bounds_is_refused() -> None:
    opt = core()
    X = opt.ask()
    with pytest.raises(
        ValueError, match=r"row 1 of X was never asked and lies outside the bounds \(x\[0\]=5.0"
    ):
        opt.tell([[0.0, 0.0], [5.0, 0.0]], [1.0, -100.0])
    assert opt.evaluations == 0 and opt.best_x is None  # nothing recorded
    opt.tell([[0.5, -1.0]], [-1.0])  # inside (on a bound): extra data
    opt.tell(X, [1.0] * 4)
    assert opt.evaluations == 5 and opt.best_loss == -1.0


def test_an_asked_row_told_twice_is_refused() -> None:
    opt = core()
    X = opt.ask()
    opt.tell(X[:2], [1.0, 2.0])
    for again in (X[:1], X[1:3], np.stack([X[2], X[2]])):
        with pytest.raises(ValueError, match=r"row \d of X is a candidate that was already told"):
            opt.tell(again, [0.0] * len(again))
    assert opt.evaluations == 2 and opt.n_pending == 2
    opt.tell(X[2:], [3.0, 4.0])
    assert opt.evaluations == 4 and opt.iteration == 1


def test_tells_past_the_budget_warn_and_are_used() -> None:
    opt = core(budget=6)
    X = opt.ask(6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt.tell(X, [float(v) for v in range(6)])
    Y = opt.ask()
    with pytest.warns(RuntimeWarning, match="evaluations told past the budget of 6: they are used"):
        opt.tell(Y, [1.0] * 4)
    assert opt.evaluations == 10


@pytest.mark.parametrize("losses", [np.ones((4, 4)), np.ones((4, 1)), [[1.0, 2.0]] * 2])
def test_losses_of_another_shape_are_refused(losses: Any) -> None:
    opt = core()
    X = opt.ask()
    with pytest.raises(ValueError, match=r"losses have shape \(\d, \d\): give one loss per row of X"):
        opt.tell(X, losses)
    assert opt.evaluations == 0


def test_a_device_without_data_is_refused() -> None:
    with pytest.raises(ValueError, match="device='meta' cannot hold the optimizer's tensors .*use 'cpu'"):
        core(device="meta")


def test_the_file_protocol_says_when_every_evaluation_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d, folder = asked_batch(tmp_path, budget=8)
    (folder / "losses.txt").write_text("nan\n" * 8)
    capsys.readouterr()
    assert main(["tell", *d, "0"]) == 0
    assert "warning: every one of the 8 evaluations told so far failed" in capsys.readouterr().err
    assert main(["status", *d, "--json"]) == 0
    assert (
        json.loads(capsys.readouterr().out)["state"]
        == "done: the budget is spent, and every evaluation failed"
    )


class Interrupt(BaseException):
    """Stands for Ctrl-C inside the objective."""


def interrupted(x: np.ndarray) -> float:
    raise Interrupt


def test_a_base_exception_in_a_timed_objective_goes_on_as_without_a_timeout() -> None:
    with pytest.raises(Interrupt):
        minimize(interrupted, X0, budget=6, timeout=5.0, progress=False, **SMALL)
