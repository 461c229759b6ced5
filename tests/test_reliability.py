"""The faults a long real run meets (issue 16): each handled, with nothing lost.

Hung objectives, runs in which everything fails, placeholders in paths, unreadable
losses files, tampered run directories and checkpoints, and the messages of bad inputs.
The soak test on a Dask cluster is in the slow suite (test_soak.py).
"""

from __future__ import annotations

import json
import sys
import threading
import time
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
    minimize(lambda x: staircase(x) if x[0] > 0 else None, X0, budget=12, progress=False, **SMALL)
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
def asked_batch(tmp_path: Path) -> tuple[list[str], Path]:
    d = ["--dir", str(tmp_path / "run")]
    assert main(["init", *d, "--dim", "2", "--budget", "16", *CLI_SMALL]) == 0
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
