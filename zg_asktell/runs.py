"""Run directories: everything a long optimization needs to survive a crash.

Layout of a run directory ``RUN`` (see docs/external.md)::

    RUN/run.json          format tag, the optimizer's settings, the candidate file format
    RUN/state.pt          checkpoint after the last complete tell (a ZeroGrads.save file)
    RUN/log.jsonl         one JSON line per evaluation attempt, appended and flushed
    RUN/best.<format>     the best point so far
    RUN/batches/<b>/      file protocol: params.<format>, batch.json, losses.txt
    RUN/work/             scratch files of running evaluations
    RUN/lock              advisory lock held by the process that writes the run

The checkpoint is written only after a whole batch is told, so resuming re-asks the open
batch (the optimizer is deterministic given its state) and re-tells the evaluations the
log already holds for it: nothing told is lost and nothing is told twice. The checkpoint
carries the run's id (from run.json) and a checksum; links inside the directory are refused.
Files and directories are created with the permissions the umask allows (0644 and 0755
under the usual umask 022).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import numpy as np
import numpy.typing as npt

from ._checkpoint import read_state, write_state
from ._config import ZeroGradsConfig, is_integer
from ._optimizer import ZeroGrads

FloatArray = npt.NDArray[np.float64]
PathLike = str | os.PathLike[str]
RUN_FORMAT = "zg_asktell.run/1"
PARAM_FORMATS = ("csv", "json", "npy")
# Statuses of an evaluation attempt; every one but "ok" is a failure.
STATUSES = ("ok", "nonfinite", "output", "exit", "timeout", "error")
_FAILED_WORDS = ("null", "none")  # text losses that mean "failed", besides nan and inf
SETTINGS = ("x0", "sigma", "lower", "upper", "budget", "seed", "config")  # of run.json
_RUN_ID = re.compile(r"[0-9a-f]{32}")


class EvaluationFailed(Exception):
    """Raised by an objective to report a failed evaluation of a given kind.

    ``status`` is one of ``"nonfinite"``, ``"output"``, ``"exit"``, ``"timeout"`` or
    ``"error"``; ``reason`` is recorded in the run log.
    """

    def __init__(self, status: str, reason: str) -> None:
        if status not in STATUSES[1:]:
            raise ValueError(f"status={status!r} must be one of {list(STATUSES[1:])}")
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


class Abandoned(BaseException):
    """Raised inside an evaluation that ran past ``minimize``'s ``timeout``, to stop it.

    It derives from ``BaseException`` so that an objective's ``except Exception`` does not
    keep the abandoned call running; catch it only to clean up, then re-raise.
    """


@dataclass(frozen=True)
class Outcome:
    """The result of one evaluation attempt: a finite loss, or a failure and its reason."""

    status: str
    loss: float | None = None
    reason: str | None = None
    seconds: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def parse_loss(text: str, source: str) -> Outcome:
    """The loss written as ``text``; ``source`` names where it came from in failure reasons."""
    word = text.strip()
    if not word:
        return Outcome("output", reason=f"{source} is empty (expected a loss)")
    if word.lower() in _FAILED_WORDS:
        return Outcome("nonfinite", reason=f"{source} reports {word!r}")
    try:
        value = float(word)
    except ValueError:
        return Outcome("output", reason=f"{source} {word[:80]!r} is not a number")
    if not math.isfinite(value):
        return Outcome("nonfinite", reason=f"{source} is {word!r}")
    return Outcome("ok", loss=value)


# --------------------------------------------------------------------- candidate files
def check_format(params_format: str) -> str:
    if params_format not in PARAM_FORMATS:
        raise ValueError(f"params format {params_format!r} is not one of {list(PARAM_FORMATS)}")
    return params_format


def write_params(path: PathLike, X: npt.ArrayLike, params_format: str) -> None:
    """Write one candidate (1-D) or a batch (2-D, one row per candidate), atomically.

    ``csv``: one line per candidate, comma-separated; ``json``: a list (of lists);
    ``npy``: a float64 array. Text formats round-trip every float64 exactly.
    """
    array = np.asarray(X, dtype=np.float64)
    check_format(params_format)

    def write(tmp: Path) -> None:
        if params_format == "npy":
            with open(tmp, "wb") as file:
                np.save(file, array)
        elif params_format == "json":
            tmp.write_text(json.dumps(array.tolist()) + "\n")
        else:
            rows = np.atleast_2d(array)
            tmp.write_text("".join(",".join(repr(float(v)) for v in row) + "\n" for row in rows))

    replace_atomically(Path(path), write)


def read_params(path: PathLike) -> FloatArray:
    """Read a candidate file by its suffix: ``.npy``, ``.json``, or text (``.csv``, ``.txt``...)."""
    path = Path(path)
    try:
        if path.suffix == ".npy":
            array = np.load(path, allow_pickle=False)
        elif path.suffix == ".json":
            array = np.asarray(json.loads(path.read_text()), dtype=np.float64)
        else:
            lines = [line for line in path.read_text().splitlines() if line.strip()]
            rows = [[float(v) for v in line.replace(",", " ").split()] for line in lines]
            array = np.asarray(rows[0] if len(rows) == 1 else rows, dtype=np.float64)
    except (ValueError, TypeError, json.JSONDecodeError) as error:
        raise ValueError(f"{str(path)!r} is not a numeric npy, JSON or CSV file: {error}") from error
    return np.asarray(array, dtype=np.float64)


def read_losses(path: PathLike, count: int) -> list[Outcome]:
    """The ``count`` losses of a batch: one per line (text), a JSON list, or a ``.npy`` vector.

    ``nan``, ``inf``, ``null`` or ``none`` report a failed evaluation. A file that cannot be
    read, has another number of losses, or holds a row that is neither a number nor one of
    these words raises ``ValueError``: such a file is a mistake to fix, not a failure.
    """
    path = Path(path)
    try:
        if path.suffix == ".npy":
            texts = [repr(float(v)) for v in np.load(path, allow_pickle=False).ravel()]
        elif path.suffix == ".json":
            values = json.loads(path.read_text())
            if not isinstance(values, list):
                raise ValueError(f"it must hold a JSON list of {count} losses")
            texts = ["null" if v is None else json.dumps(v) for v in values]
        else:
            texts = path.read_text().splitlines()
            while texts and not texts[-1].strip():
                texts.pop()
    except (ValueError, TypeError) as error:  # JSON, UTF-8 and npy errors are ValueErrors
        raise ValueError(
            f"{str(path)!r} is not a readable losses file ({error}); fix it and tell again"
        ) from error
    if len(texts) != count:
        raise ValueError(
            f"{str(path)!r} holds {len(texts)} losses but the batch has {count} candidates: "
            "write one loss per candidate, in the order of the params file"
        )
    outcomes = [parse_loss(text, f"loss of row {row}") for row, text in enumerate(texts)]
    for outcome in outcomes:
        if outcome.status == "output":
            raise ValueError(
                f"{str(path)!r}: the {outcome.reason}; write a number, or nan, inf, null or none "
                "for a failed evaluation, then tell again (nothing was recorded)"
            )
    return outcomes


# ----------------------------------------------------------------------- atomic writes
def fresh_path(parent: Path, prefix: str, suffix: str = "", directory: bool = False) -> Path:
    """Create a new, uniquely named file (or directory) in ``parent``.

    Unlike ``tempfile`` (0600 and 0700), it gets the permissions the umask allows, as every
    file of a run does.
    """
    path = parent / f"{prefix}{secrets.token_hex(8)}{suffix}"
    if directory:
        os.mkdir(path, 0o777)
    else:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    return path


def replace_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """``write`` a temporary file next to ``path``, fsync it, rename it over ``path``."""
    tmp = fresh_path(path.parent, f".{path.name}.", ".tmp")
    try:
        write(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync(path.parent)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- settings
def make_settings(
    x0: npt.ArrayLike,
    sigma: npt.ArrayLike | None,
    lower: npt.ArrayLike | None,
    upper: npt.ArrayLike | None,
    budget: int,
    seed: int | None,
    config: ZeroGradsConfig | None,
    options: dict[str, Any],
) -> dict[str, Any]:
    """The optimizer's arguments as plain JSON values (validated by building it once)."""
    if not is_integer(budget) or budget < 1:
        raise ValueError(f"budget={budget!r} must be a positive integer (evaluations to run)")
    optimizer = ZeroGrads(
        x0, sigma, lower=lower, upper=upper, budget=budget, config=config, seed=seed, **options
    )

    def plain(value: npt.ArrayLike | None) -> Any:
        return None if value is None else np.asarray(value, dtype=np.float64).tolist()

    return {
        "x0": plain(x0),
        "sigma": plain(sigma),
        "lower": plain(lower),
        "upper": plain(upper),
        "budget": int(budget),
        "seed": None if seed is None else int(seed),
        "config": optimizer.config.to_dict(),
    }


def optimizer_from(settings: dict[str, Any]) -> ZeroGrads:
    """A fresh optimizer from :func:`make_settings` values."""
    return ZeroGrads(
        np.asarray(settings["x0"], dtype=np.float64),
        settings["sigma"],
        lower=settings["lower"],
        upper=settings["upper"],
        budget=settings["budget"],
        config=ZeroGradsConfig.from_dict(settings["config"]),
        seed=settings["seed"],
    )


# ---------------------------------------------------------------------------- batches
@dataclass(frozen=True)
class Batch:
    """Candidates asked together: batch ``index``, evaluation ids ``first + row``."""

    index: int
    first: int
    X: FloatArray


def ask_batch(optimizer: ZeroGrads) -> Batch | None:
    """The next batch (``batch_size`` rows, fewer at the end of the budget); None when spent."""
    budget = optimizer.budget
    if budget is None:
        raise ValueError("the optimizer needs a budget to be run in batches")
    remaining = budget - optimizer.evaluations
    if remaining <= 0:
        return None
    size = optimizer.config.batch_size
    first = optimizer.n_asked
    return Batch(first // size, first, optimizer.ask(min(size, remaining)))


def record(batch: Batch, row: int, attempt: int, final: bool, outcome: Outcome) -> dict[str, Any]:
    """The run log's line for one attempt at ``batch.X[row]``."""
    return {
        "id": batch.first + row,
        "batch": batch.index,
        "attempt": attempt,
        "final": final,
        "status": outcome.status,
        "loss": outcome.loss,
        "reason": outcome.reason,
        "seconds": None if outcome.seconds is None else round(outcome.seconds, 6),
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "x": batch.X[row].tolist(),
    }


@dataclass
class Logged:
    """What the log already holds for a batch: final outcomes and failed attempts per row."""

    finals: dict[int, Outcome]
    attempts: dict[int, int]


# ------------------------------------------------------------------------ run directory
class RunDir:
    """A run directory (see the module docstring); create or open one, then lock it to write."""

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        self.path = path
        self.run_id: str = meta["id"]
        self.settings: dict[str, Any] = meta["settings"]
        self.params_format: str = meta["params_format"]
        self._log: TextIO | None = None
        self._locked = False

    # paths: none may be a symbolic link
    def inside(self, *parts: str) -> Path:
        """``RUN/parts...``; ``ValueError`` when it or a folder on the way is a symbolic link.

        Following one would read or write outside the run (a ``log.jsonl`` link overwrote
        another file), so links are refused, not followed. The run directory itself may be one.
        """
        path = self.path
        for part in parts:
            path = path / part
            if path.is_symlink():
                raise ValueError(
                    f"{str(path)!r} is a symbolic link; a run directory holds only its own files "
                    "and folders, and zg-asktell does not follow links there: replace the link by "
                    "what it points to, or remove it"
                )
        return path

    @property
    def state_path(self) -> Path:
        return self.inside("state.pt")

    @property
    def log_path(self) -> Path:
        return self.inside("log.jsonl")

    @property
    def work_dir(self) -> Path:
        return self.inside("work")

    @property
    def best_path(self) -> Path:
        return self.inside(f"best.{self.params_format}")

    def batch_file(self, index: int, name: str) -> Path:
        """``RUN/batches/<index>/<name>`` (file protocol)."""
        return self.inside("batches", str(index), name)

    # life cycle
    @classmethod
    def create(cls, path: PathLike, settings: dict[str, Any], params_format: str = "csv") -> RunDir:
        """A new run directory with the initial checkpoint, made atomically (temp dir + rename)."""
        path = Path(path)
        if path.exists():
            raise ValueError(
                f"{str(path)!r} already exists: resume it (resume=True, --resume) or choose a new directory"
            )
        run_id = secrets.token_hex(16)
        meta = {
            "format": RUN_FORMAT,
            "id": run_id,
            "settings": settings,
            "params_format": check_format(params_format),
        }
        optimizer = optimizer_from(settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = fresh_path(path.parent, f".{path.name}.creating-", directory=True)
        try:
            (tmp / "run.json").write_text(json.dumps(meta, indent=1) + "\n")
            _save(tmp / "state.pt", optimizer, run_id)
            (tmp / "log.jsonl").touch()
            for name in ("run.json", "state.pt", "log.jsonl"):
                _fsync(tmp / name)
            os.rename(tmp, path)
        except OSError as error:
            raise ValueError(f"could not create the run directory {str(path)!r}: {error}") from error
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        _fsync(path.parent)
        return cls(path, meta)

    @classmethod
    def open(cls, path: PathLike) -> RunDir:
        """An existing run directory; a missing, foreign or corrupt one raises ``ValueError``."""
        path = Path(path)
        meta_path = path / "run.json"
        if meta_path.is_symlink() or not meta_path.is_file():
            raise ValueError(
                f"{str(path)!r} is not a zg-asktell run directory (no run.json); "
                "create one with `zg-asktell init` or `zg-asktell run`"
            )
        try:
            meta = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(
                f"{str(meta_path)!r} is corrupt ({error}); it is not a run description"
            ) from error
        if (
            not isinstance(meta, dict)
            or meta.get("format") != RUN_FORMAT
            or not isinstance(meta.get("settings"), dict)
            or sorted(meta["settings"]) != sorted(SETTINGS)
            or meta.get("params_format") not in PARAM_FORMATS
            or not isinstance(meta.get("id"), str)
            or not _RUN_ID.fullmatch(meta["id"])
        ):
            raise ValueError(
                f"{str(meta_path)!r} is not a zg-asktell run description (format {RUN_FORMAT!r}: "
                "format, id, settings and params_format)"
            )
        return cls(path, meta)

    def check_settings(self, settings: dict[str, Any]) -> None:
        """Raise ``ValueError`` naming every setting that differs from the run's."""
        changed = sorted(
            k for k in set(settings) | set(self.settings) if settings.get(k) != self.settings.get(k)
        )
        if changed:
            raise ValueError(
                f"{str(self.path)!r} was started with different {', '.join(changed)}; resume it with "
                "the same settings, or start a new run directory"
            )

    @contextlib.contextmanager
    def lock(self, wait: float = 0.0) -> Iterator[None]:
        """Hold the run's write lock, waiting up to ``wait`` seconds for another writer.

        Taking it also clears what a killed writer left: temporary files and scratch dirs.
        """
        with open(self.inside("lock"), "a") as handle:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise RuntimeError(
                            f"{str(self.path)!r} is in use by another zg-asktell process; "
                            "wait for it to finish or stop it first"
                        ) from None
                    time.sleep(0.05)
            for stale in self.path.glob(".*.tmp"):
                stale.unlink(missing_ok=True)
            shutil.rmtree(self.work_dir, ignore_errors=True)
            self._locked = True
            try:
                yield
            finally:
                self._locked = False
                if self._log is not None:
                    self._log.close()
                    self._log = None
                fcntl.flock(handle, fcntl.LOCK_UN)

    # checkpoint
    def load_optimizer(self) -> ZeroGrads:
        """The optimizer of the last checkpoint (loaded weights-only, checksum and fields checked).

        Under the lock it also rewrites ``best.<format>`` when it is missing or stale (a kill
        between the checkpoint's rename and the best point's write leaves it behind).
        """
        path = self.state_path
        if not path.is_file():
            raise ValueError(f"{str(path)!r} is missing: the run directory is incomplete")
        state = read_state(path)
        optimizer = ZeroGrads.from_state_dict(state)  # checks that it is a whole, intact state
        if state.get("run") != self.run_id:
            raise ValueError(
                f"{str(path)!r} belongs to another run (id {state.get('run')!r}; this run's is "
                f"{self.run_id!r} in run.json): it was copied from another directory. Put this "
                "run's state.pt back, or start a new run directory"
            )
        if self._locked:
            self._write_best(optimizer)
        return optimizer

    def checkpoint(self, optimizer: ZeroGrads) -> None:
        """Make the log durable, then replace the checkpoint and the best point atomically."""
        if self._log is not None:
            self._log.flush()
        _fsync(self.log_path)  # also what an earlier, killed process appended
        replace_atomically(self.state_path, lambda tmp: _save(tmp, optimizer, self.run_id))
        self._write_best(optimizer)

    def _write_best(self, optimizer: ZeroGrads) -> None:
        best, path = optimizer.best_x, self.best_path
        if best is None:
            return
        with contextlib.suppress(ValueError, OSError):
            if np.array_equal(read_params(path), best):
                return
        write_params(path, best, self.params_format)

    # log
    def append(self, line: dict[str, Any]) -> None:
        """Append one record to the log and flush it (a torn last line is dropped first)."""
        if self._log is None:
            path = self.log_path
            _drop_torn_tail(path)
            self._log = os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW), "a")
        self._log.write(json.dumps(line, allow_nan=False) + "\n")
        self._log.flush()

    def records(self) -> list[dict[str, Any]]:
        """Every complete record of the log, in order."""
        if not self.log_path.exists():
            return []
        with open(self.log_path, "rb") as file:
            lines = file.read().split(b"\n")[:-1]  # the last piece is empty or a torn write
        return [_parse(line, f"line {number}") for number, line in enumerate(lines, 1)]

    def batch_records(self, first: int, count: int) -> list[dict[str, Any]]:
        """The records of evaluations ``first .. first+count-1``, read from the log's end.

        Batches are logged in order, so the scan stops at the first older record.
        """
        found = []
        for line in _reverse_lines(self.log_path):
            item = _parse(line, "a line near the end")
            if item["id"] < first:
                break
            if item["id"] < first + count:
                found.append(item)
        return found[::-1]

    def logged(self, batch: Batch) -> Logged:
        """The batch's evaluations already in the log (each checked against the asked row).

        The log never runs past the open batch: a record beyond it means the checkpoint is
        older than the log, an error.
        """
        last = next(_reverse_lines(self.log_path), None)
        if last is not None and _parse(last, "the last line")["id"] >= batch.first + len(batch.X):
            raise ValueError(
                f"the log of {str(self.path)!r} runs past the checkpoint, which is at evaluation "
                f"{batch.first}: state.pt is older than log.jsonl (restored from a copy?). Put back "
                "the state.pt of this log, or start a new run directory"
            )
        result = Logged({}, {})
        for item in self.batch_records(batch.first, len(batch.X)):
            row = item["id"] - batch.first
            if not np.array_equal(np.asarray(item["x"], dtype=np.float64), batch.X[row]):
                raise ValueError(
                    f"the log of {str(self.path)!r} holds evaluation {item['id']} at another point "
                    "than the checkpoint asks: log.jsonl and state.pt belong to different runs"
                )
            if item["final"]:
                result.finals[row] = Outcome(item["status"], item["loss"], item["reason"], item["seconds"])
            else:
                result.attempts[row] = result.attempts.get(row, 0) + 1
        return result


def _save(path: Path, optimizer: ZeroGrads, run_id: str) -> None:
    """The optimizer's checkpoint, tied to its run by the run's id (under the checksum)."""
    write_state(path, {**optimizer.state_dict(), "run": run_id})


# Each field of a log record and the test its value must pass.
_FIELDS: dict[str, Callable[[Any], bool]] = {
    "id": lambda v: is_integer(v) and v >= 0,
    "batch": lambda v: is_integer(v) and v >= 0,
    "attempt": lambda v: is_integer(v) and v >= 1,
    "final": lambda v: isinstance(v, bool),
    "status": lambda v: v in STATUSES,
    "loss": lambda v: (
        v is None or (isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v))
    ),
    "reason": lambda v: v is None or isinstance(v, str),
    "seconds": lambda v: v is None or (isinstance(v, int | float) and not isinstance(v, bool)),
    "time": lambda v: isinstance(v, str),
    "x": lambda v: (
        isinstance(v, list) and all(isinstance(e, int | float) and not isinstance(e, bool) for e in v)
    ),
}


def _parse(line: bytes, where: str) -> dict[str, Any]:
    try:
        item = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(
            f"{where} of the run log is not valid JSON ({error}): the log was edited or corrupted"
        ) from error
    if not isinstance(item, dict):
        raise ValueError(
            f"{where} of the run log is not an evaluation record: the log was edited or corrupted"
        )
    for field, valid in _FIELDS.items():
        if field not in item or not valid(item[field]):
            problem = "lacks" if field not in item else f"has an invalid {item[field]!r:.60} as"
            raise ValueError(
                f"{where} of the run log {problem} field {field!r}: the log was edited or corrupted"
            )
    if (item["status"] == "ok") != (item["loss"] is not None):
        raise ValueError(
            f"{where} of the run log has status {item['status']!r} with loss {item['loss']!r}: "
            "the log was edited or corrupted"
        )
    return item


_CHUNK = 1 << 16


def _complete_end(file: BinaryIO) -> int:
    """Offset just after the last newline: where the complete lines end."""
    position = file.seek(0, os.SEEK_END)
    while position > 0:
        step = min(_CHUNK, position)
        file.seek(position - step)
        cut = file.read(step).rfind(b"\n")
        if cut >= 0:
            return position - step + cut + 1
        position -= step
    return 0


def _drop_torn_tail(path: Path) -> None:
    """Cut a last line without its newline (a write interrupted by a kill)."""
    with open(path, "rb+") as file:
        end = _complete_end(file)
        if end != file.seek(0, os.SEEK_END):
            file.truncate(end)


def _reverse_lines(path: Path) -> Iterator[bytes]:
    """The complete lines of ``path``, last first."""
    with open(path, "rb") as file:
        position = max(0, _complete_end(file) - 1)  # drop the final newline
        buffer = b""
        while position > 0:
            step = min(_CHUNK, position)
            position -= step
            file.seek(position)
            lines = (file.read(step) + buffer).split(b"\n")
            buffer = lines[0]  # may continue in the chunk before
            yield from reversed(lines[1:])
        if buffer:
            yield buffer
