"""The ``zg-asktell`` command line and ``Command``, with real simulator processes.

The simulators are tests/sims/simulate.py (a separate Python process) and
tests/sims/simulate.sh (POSIX sh and awk).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from zg_asktell import ZeroGrads, minimize
from zg_asktell.cli import main
from zg_asktell.command import Command
from zg_asktell.runs import EvaluationFailed

SIMS = Path(__file__).resolve().parent / "sims"
PY_SIM = [sys.executable, str(SIMS / "simulate.py"), "{params}"]
SH_SIM = [str(SIMS / "simulate.sh"), "{params}"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
SMALL = ["--batch-size", "8", "--set", "hidden_width=8", "--set", "hidden_layers=1"]
# A directory name a shell would mangle: spaces, quotes, globs, substitutions, separators.
NASTY = "my run; $(touch pwned) & `touch pwned2` 'q' \"d\" |*?"


def sim_loss(x: list[float]) -> float:
    """The loss simulate.py computes."""
    return sum(round(2 * v - 1) ** 2 for v in x) + 0.01 * sum(x)


def fault_kind(x: list[float]) -> str | None:
    """The fault simulate.py --faults gives the candidate x."""
    digest = int(hashlib.sha256(repr([float(v) for v in x]).encode()).hexdigest(), 16)
    return ("exit", "garbage", "hang", "nan")[digest % 16] if digest % 16 < 4 else None


def candidate(kind: str | None) -> np.ndarray:
    """A candidate that simulate.py --faults treats as ``kind``."""
    for i in range(1000):
        x = [i / 7.0, 0.25, -0.5]
        if fault_kind(x) == kind:
            return np.array(x)
    raise AssertionError(kind)


def cli(*args: str, cwd: Path, console: bool = False) -> subprocess.CompletedProcess[str]:
    """The command line in its own process (the console script, or ``python -m zg_asktell``)."""
    launcher = (
        [str(Path(sys.executable).parent / "zg-asktell")] if console else [sys.executable, "-m", "zg_asktell"]
    )
    return subprocess.run([*launcher, *args], capture_output=True, text=True, env=ENV, cwd=cwd, timeout=300)


def log_of(run: Path) -> list[dict[str, Any]]:
    """Log records without timing fields, ordered by evaluation and attempt."""
    items = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    for item in items:
        del item["time"], item["seconds"]
    return sorted(items, key=lambda item: (item["id"], item["attempt"]))


def status(run: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["status", "--dir", str(run), "--json"]) == 0
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    return result


# --------------------------------------------------------------------------- Command
@pytest.mark.parametrize("params_format", ["csv", "json", "npy"])
@pytest.mark.parametrize("loss_from", ["stdout", "file"])
def test_command_round_trips_every_format(tmp_path: Path, params_format: str, loss_from: str) -> None:
    argv = PY_SIM + (["--loss-file", "{loss}"] if loss_from == "file" else [])
    command = Command(argv, params_format=params_format, loss_from=loss_from, workdir=str(tmp_path / NASTY))
    x = np.array([0.1234567890123, -2.5, 1e-300, 7.0])
    assert command(x) == sim_loss(x.tolist())
    assert not list(tmp_path.rglob("pwned*"))
    assert list((tmp_path / NASTY).iterdir()) == []  # per-evaluation files are removed


def test_command_with_sh_simulator_never_uses_a_shell(tmp_path: Path) -> None:
    command = Command(SH_SIM, workdir=str(tmp_path / NASTY))
    assert command(np.array([1.2, -0.7, 0.2])) == 8.0  # int(2x + 10) - 10 = 2, -2, 0
    assert not list(tmp_path.rglob("pwned*"))


@pytest.mark.parametrize(
    ("kind", "status", "reason"),
    [
        ("exit", "exit", "exit status 3; stderr: solver diverged"),
        ("garbage", "output", "the last line of stdout 'loss: oops' is not a number"),
        ("nan", "nonfinite", "the last line of stdout is 'nan'"),
        ("hang", "timeout", "no result after 0.5 s; the program was killed"),
    ],
)
def test_command_faults_raise_with_their_reason(kind: str, status: str, reason: str) -> None:
    command = Command(PY_SIM + ["--faults", "exit,garbage,hang,nan"], timeout=0.5)
    start = time.monotonic()
    with pytest.raises(EvaluationFailed) as failure:
        command(candidate(kind))
    assert (failure.value.status, failure.value.reason) == (status, reason)
    assert time.monotonic() - start < 10  # a hang is killed at the timeout


def test_command_crash_and_missing_loss_file(tmp_path: Path) -> None:
    x = candidate(None)
    while int(hashlib.sha256(repr(x.tolist()).encode()).hexdigest(), 16) % 4:
        x = x + 1.0  # a candidate the --flaky simulator crashes on (once)
    with pytest.raises(EvaluationFailed, match="exit: killed by signal 6"):
        Command(PY_SIM + ["--flaky", str(tmp_path)])(x)
    with pytest.raises(EvaluationFailed, match="wrote no loss file"):
        Command(PY_SIM, loss_from="file")(x)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"argv": "./simulate {params}"}, "non-empty list of strings"),
        ({"argv": ["./no-such-simulator", "{params}"]}, "is not an executable file"),
        ({"argv": SH_SIM, "params_format": "xml"}, "params format 'xml'"),
        ({"argv": SH_SIM, "loss_from": "stderr"}, "loss_from='stderr'"),
        ({"argv": SH_SIM, "timeout": 0}, "timeout=0"),
    ],
)
def test_command_rejects_bad_settings(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Command(**kwargs)


def test_run_goes_on_through_faults_with_retries(tmp_path: Path) -> None:
    command = Command(PY_SIM + ["--faults", "exit,garbage,nan", "--flaky", str(tmp_path)])
    with ThreadPoolExecutor(2) as pool:
        result = minimize(
            command,
            np.zeros(3),
            0.5,
            budget=32,
            seed=2,
            executor=pool,
            retries=1,
            run_dir=tmp_path / "run",
            progress=False,
            batch_size=8,
        )
    items = log_of(tmp_path / "run")
    finals = [item for item in items if item["final"]]
    assert [item["id"] for item in finals] == list(range(32))
    retried = {item["id"]: item for item in items if not item["final"]}
    for item in finals:
        expected = {"exit": "exit", "garbage": "output", "nan": "nonfinite"}.get(
            fault_kind(item["x"]) or "", "ok"
        )
        assert item["status"] == expected
        if expected == "ok":
            assert item["loss"] == sim_loss(item["x"])
        else:
            assert item["loss"] is None and item["attempt"] == 2  # one retry, then told as failed
        if item["attempt"] == 2:
            assert retried[item["id"]]["attempt"] == 1
    crashes = [item for item in retried.values() if item["reason"].startswith("killed by signal 6")]
    assert crashes, "the flaky simulator crashed on no candidate: the test lost its point"
    assert result.n_failed == sum(item["status"] != "ok" for item in finals) > 0


# ----------------------------------------------------------------------- zg-asktell run
def test_run_console_script_with_sh_simulator(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    options = "--dim 3 --budget 24 --workers 2".split()
    done = cli("run", "--dir", NASTY, *options, *SMALL, "--", *SH_SIM, cwd=tmp_path, console=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("best loss ") and "after 24 evaluations (0 failed)" in done.stdout
    run = tmp_path / NASTY
    finals = [item for item in log_of(run) if item["final"]]
    assert [item["id"] for item in finals] == list(range(24))
    assert all(item["status"] == "ok" for item in finals)
    assert not list(tmp_path.rglob("pwned*"))
    info = status(run, capsys)
    assert info["evaluations"] == 24 and info["state"] == "done: the budget is spent"
    assert 0.0 <= info["surrogate_explained"] <= 1.0  # the default estimator reports its share
    assert info["sigma"] > 0 and info["step_size"] > 0  # the adapted width and step, parameter units
    best = np.loadtxt(run / "best.csv", delimiter=",")
    assert info["best_loss"] == min(item["loss"] for item in finals)
    assert any(item["x"] == best.tolist() for item in finals)


def test_kill_9_then_resume_loses_and_doubles_nothing(tmp_path: Path) -> None:
    program = PY_SIM + ["--sleep", "0.02", "--faults", "exit,garbage,nan"]
    args = "--dim 3 --budget 40 --workers 2 --retries 1 --timeout 20 --seed 5 --quiet".split()
    args += [*SMALL, "--", *program]
    launcher = [sys.executable, "-m", "zg_asktell", "run"]
    whole = subprocess.Popen(
        [*launcher, "--dir", "whole", *args],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = tmp_path / "cut" / "log.jsonl"
    for kill_at in (5, 22):
        cut = subprocess.Popen(
            [*launcher, "--dir", "cut", "--resume", *args],
            cwd=tmp_path,
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        while not (log.exists() and log.read_bytes().count(b"\n") >= kill_at):
            assert cut.poll() is None, "the run ended before it could be killed"
            time.sleep(0.005)
        os.kill(cut.pid, signal.SIGKILL)
        assert cut.wait() == -signal.SIGKILL
    finished = cli("run", "--dir", "cut", "--resume", *args, cwd=tmp_path)
    out, err = whole.communicate(timeout=300)
    assert whole.returncode == 0 and finished.returncode == 0, err + finished.stderr
    assert finished.stdout.split("; best point")[0] == out.split("; best point")[0]
    items = log_of(tmp_path / "cut")
    assert items == log_of(tmp_path / "whole")
    assert [item["id"] for item in items if item["final"]] == list(range(40))  # each evaluation once
    assert any(not item["final"] for item in items)  # failures were retried across the kills
    cut_state, whole_state = (ZeroGrads.load(tmp_path / name / "state.pt") for name in ("cut", "whole"))
    np.testing.assert_array_equal(cut_state.theta, whole_state.theta)
    assert (tmp_path / "cut" / "best.csv").read_bytes() == (tmp_path / "whole" / "best.csv").read_bytes()


def test_sigterm_stops_the_run_and_its_programs(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    options = "--dim 2 --budget 8 --workers 2 --quiet".split()
    program = [*PY_SIM, "--ppid", str(pids), "--sleep", "60"]
    run = subprocess.Popen(
        [sys.executable, "-m", "zg_asktell", "run", *options, "--", *program],
        cwd=tmp_path,
        env=ENV,
        stderr=subprocess.PIPE,
        text=True,
    )
    while len(list(pids.iterdir())) < 2:
        assert run.poll() is None
        time.sleep(0.01)
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=30)
    assert run.returncode == 130 and "--resume" in err
    for pid in (int(path.name) for path in pids.iterdir()):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_run_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = str(tmp_path / "run")
    cases = [
        (["run", "--dir", run, "--dim", "2", "--budget", "8"], "give the program after --"),
        (["run", "--dir", run, "--budget", "8", "--", *SH_SIM], "give --dim N"),
        (["run", "--dir", run, "--dim", "2", "--budget", "8", "--", "./nope"], "is not an executable file"),
        (["run", "--dir", run, "--dim", "2", "--budget", "8", "--set", "lr", "--", *SH_SIM], "KEY=VALUE"),
        (
            ["run", "--dir", run, "--dim", "2", "--budget", "8", "--workers", "0", "--", *SH_SIM],
            "--workers 0",
        ),
    ]
    for argv, message in cases:
        assert main(argv) == 1
        assert message in capsys.readouterr().err
    assert main(["run", "--dir", run, "--dim", "2", "--budget", "8", "--quiet", *SMALL, "--", *SH_SIM]) == 0
    assert main(["run", "--dir", run, "--dim", "2", "--budget", "8", "--quiet", *SMALL, "--", *SH_SIM]) == 1
    assert "add --resume" in capsys.readouterr().err
    assert main(["run", "--dir", run, "--dim", "2", "--budget", "16", "--resume", *SMALL, "--", *SH_SIM]) == 1
    assert "different budget" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["status", "--dir", run, "--", *SH_SIM])


# ----------------------------------------------------------------------- file protocol
def evaluate_batch(folder: Path) -> list[str]:
    """Each row of params.csv through the sh simulator, one process per row."""
    losses = []
    for number, row in enumerate((folder / "params.csv").read_text().splitlines()):
        (folder / f"row{number}.csv").write_text(row + "\n")
        done = subprocess.run([*SH_SIM[:1], str(folder / f"row{number}.csv")], capture_output=True, text=True)
        losses.append(done.stdout.splitlines()[-1])
    return losses


def test_file_protocol_steps_are_safe_to_repeat(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    d = ["--dir", str(run)]
    init = ["init", *d, "--dim", "3", "--budget", "20", *SMALL]
    assert main(init) == 0 and main(init) == 0
    assert main(["init", *d, "--dim", "3", "--budget", "30", *SMALL]) == 1
    assert "different budget" in capsys.readouterr().err
    assert main(["tell", *d, "0"]) == 1
    assert "batch 0 was never asked; the next batch is 0" in capsys.readouterr().err

    assert main(["ask", *d]) == 0 and main(["ask", *d]) == 0
    assert capsys.readouterr().out == "0\n0\n"
    folder = run / "batches" / "0"
    assert json.loads((folder / "batch.json").read_text()) == {
        "batch": 0,
        "first": 0,
        "size": 8,
        "params": "params.csv",
    }
    losses = evaluate_batch(folder)
    losses[2], losses[5] = "segfault", "nan"
    (folder / "losses.txt").write_text("\n".join(losses[:7]) + "\n")
    assert main(["tell", *d, "0"]) == 1
    assert "holds 7 losses but the batch has 8 candidates" in capsys.readouterr().err
    assert status(run, capsys)["evaluations"] == 0
    (folder / "losses.txt").write_text("\n".join(losses) + "\n\n")
    assert main(["tell", *d, "0"]) == 1  # a row that is not a loss: nothing recorded
    assert "the loss of row 2 'segfault' is not a number" in capsys.readouterr().err
    assert status(run, capsys)["evaluations"] == 0 and log_of(run) == []
    losses[2] = "null"
    (folder / "losses.txt").write_text("\n".join(losses) + "\n\n")
    assert main(["tell", *d, "0"]) == 0
    assert main(["tell", *d, "0"]) == 0  # the same batch again: counted once
    assert "already told with these losses; nothing changed" in capsys.readouterr().err
    info = status(run, capsys)
    assert info["evaluations"] == 8 and info["failed"] == {"nonfinite": 2}
    assert info["state"] == "batch 1 is next"
    items = log_of(run)
    assert len(items) == 8 and items[2]["reason"] == "loss of row 2 reports 'null'"
    (tmp_path / "other.txt").write_text("\n".join(["1.0"] * 8) + "\n")
    assert main(["tell", *d, "0", "--losses", str(tmp_path / "other.txt")]) == 1
    assert "was already told with loss" in capsys.readouterr().err
    assert main(["tell", *d, "1"]) == 1 and main(["tell", *d, "4"]) == 1
    assert capsys.readouterr().err.count("was never asked") == 2

    for index in (1, 2):
        capsys.readouterr()
        assert main(["ask", *d]) == 0 and capsys.readouterr().out == f"{index}\n"
        folder = run / "batches" / str(index)
        (folder / "losses.json").write_text(json.dumps([float(v) for v in evaluate_batch(folder)]))
        assert main(["tell", *d, str(index), "--losses", str(folder / "losses.json")]) == 0
    assert (
        len(np.loadtxt(run / "batches" / "2" / "params.csv", delimiter=",", ndmin=2)) == 4
    )  # the budget's end
    capsys.readouterr()
    assert main(["ask", *d]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "budget of 20 evaluations is spent" in captured.err
    assert status(run, capsys)["evaluations"] == 20 and len(log_of(run)) == 20
    assert main(["plot", *d, "--out", str(tmp_path / "curves.png")]) == 0
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_status_of_a_corrupt_or_foreign_run_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--dir", str(tmp_path)]) == 1
    assert "is not a zg-asktell run directory (no run.json)" in capsys.readouterr().err
    run = tmp_path / "run"
    assert main(["init", "--dir", str(run), "--dim", "2", "--budget", "8"]) == 0
    (run / "state.pt").write_bytes(b"PK\x03\x04 not really a zip")
    assert main(["status", "--dir", str(run)]) == 1
    assert "is not a readable ZeroGrads save file" in capsys.readouterr().err


def test_python_m_keeps_the_demo_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["demo", "--help"])
    assert done.value.code == 0 and "--discs" in capsys.readouterr().out
