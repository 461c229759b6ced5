"""``Command``: an objective that runs an external program on each candidate."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from .runs import EvaluationFailed, check_format, fresh_path, parse_loss, write_params

LossSource = Literal["stdout", "file"]
_RUNNING: set[subprocess.Popen[bytes]] = set()
_RUNNING_LOCK = threading.Lock()
_TAIL = 300  # characters of stderr kept in a failure reason
_PLACEHOLDER = re.compile(r"\{params\}|\{loss\}")


@dataclass(frozen=True)
class Command:
    """Evaluate a candidate by running a program: ``Command(["./simulate", "{params}"])(x)``.

    The candidate is written to a fresh file (``params_format``: ``"csv"``, ``"json"`` or
    ``"npy"``); ``{params}`` in any argument becomes its path and ``{loss}`` the path of a
    file the program may write its loss to (also in the environment as ``ZG_PARAMS`` and
    ``ZG_LOSS``). The program runs with an argument list, never through a shell. The loss
    is the last non-empty line of its standard output (``loss_from="stdout"``) or of the
    loss file (``"file"``). A non-zero exit, a timeout (the program's process group is
    killed) or output that is not a number raises :class:`EvaluationFailed`.

    Args:
        argv: the program and its arguments.
        params_format: format of the candidate file.
        loss_from: where the loss is read.
        timeout: seconds an evaluation may take (None: no limit).
        workdir: directory for the per-evaluation files (default: the system's temp dir).
    """

    argv: Sequence[str]
    params_format: str = "csv"
    loss_from: LossSource = "stdout"
    timeout: float | None = None
    workdir: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.argv, str) or not self.argv or not all(isinstance(a, str) for a in self.argv):
            raise ValueError(
                f"argv={self.argv!r} must be a non-empty list of strings, e.g. ['./simulate', '{{params}}']"
            )
        object.__setattr__(self, "argv", tuple(self.argv))
        if shutil.which(self.argv[0]) is None:
            raise ValueError(
                f"program {self.argv[0]!r} is not an executable file or a command on PATH; "
                "give its path (e.g. ./simulate) and make it executable"
            )
        check_format(self.params_format)
        if self.loss_from not in ("stdout", "file"):
            raise ValueError(f"loss_from={self.loss_from!r} must be 'stdout' or 'file'")
        if self.timeout is not None and not (isinstance(self.timeout, int | float) and self.timeout > 0):
            raise ValueError(f"timeout={self.timeout!r} must be a positive number of seconds or None")

    def __call__(self, x: npt.ArrayLike) -> float:
        parent = Path(tempfile.gettempdir() if self.workdir is None else self.workdir)
        parent.mkdir(parents=True, exist_ok=True)
        scratch = fresh_path(parent, "zg-eval-", directory=True)  # the umask's permissions, as a run's files
        try:
            params = scratch / f"params.{self.params_format}"
            loss_file = scratch / "loss.txt"
            write_params(params, np.asarray(x, dtype=np.float64), self.params_format)
            paths = {"{params}": str(params), "{loss}": str(loss_file)}
            # One pass: a path that itself contains "{loss}" or "{params}" is not replaced again.
            args = [_PLACEHOLDER.sub(lambda match: paths[match.group()], a) for a in self.argv]
            env = {**os.environ, "ZG_PARAMS": str(params), "ZG_LOSS": str(loss_file)}
            stdout = self._run(args, env)
            if self.loss_from == "stdout":
                text, source = stdout, "the last line of stdout"
            elif loss_file.is_file():
                text, source = loss_file.read_text(errors="replace"), "the loss file"
            else:
                raise EvaluationFailed("output", "the program wrote no loss file ({loss}, $ZG_LOSS)")
            lines = [line for line in text.splitlines() if line.strip()]
            outcome = parse_loss(lines[-1] if lines else "", source)
            if outcome.loss is None:
                raise EvaluationFailed(outcome.status, outcome.reason or outcome.status)
            return outcome.loss
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _run(self, args: list[str], env: dict[str, str]) -> str:
        """Run the program in its own process group; its stdout, or EvaluationFailed."""
        try:
            process = subprocess.Popen(
                args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True
            )
        except OSError as error:
            raise EvaluationFailed("error", f"could not start {args[0]!r}: {error}") from None
        with _RUNNING_LOCK:
            _RUNNING.add(process)
        try:
            out, err = process.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            _kill(process)
            process.communicate()
            raise EvaluationFailed(
                "timeout", f"no result after {self.timeout} s; the program was killed"
            ) from None
        finally:
            if process.poll() is None:  # interrupted while waiting: take the program down too
                _kill(process)
                process.wait()
            with _RUNNING_LOCK:
                _RUNNING.discard(process)
        if process.returncode != 0:
            code = process.returncode
            how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
            tail = err.decode(errors="replace").strip()[-_TAIL:]
            raise EvaluationFailed("exit", f"{how}; stderr: {tail}" if tail else how)
        return out.decode(errors="replace")


def stop_running() -> None:
    """Kill every program a :class:`Command` is running in this process (on interrupt)."""
    with _RUNNING_LOCK:
        for process in _RUNNING:
            _kill(process)


def _kill(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
