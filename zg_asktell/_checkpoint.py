"""Save files of :class:`~zg_asktell.ZeroGrads`: written with a checksum, read weights-only,
every field checked before anything is built from it.

A save file is ``torch.save`` of the optimizer's ``state_dict()`` plus ``"sha256"``, the
SHA-256 of its content (every key but that one, tensors by dtype, shape and bytes). A file
whose content no longer matches it (a flipped byte, an edit) is refused. Run directories
add their run's id under ``"run"`` (covered by the checksum).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import math
import os
import pickle
import warnings
from typing import Any

import numpy as np
import torch

from ._config import ZeroGradsConfig, is_integer

CHECKSUM = "sha256"
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def write_state(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """``torch.save`` of ``state`` with its checksum."""
    torch.save({**state, CHECKSUM: checksum(state)}, path)


def read_state(path: str | os.PathLike[str]) -> Any:
    """The content of a save file, loaded weights-only; ``ValueError`` naming what is wrong.

    A missing file raises ``FileNotFoundError``. The content itself is checked by
    :func:`check_state` when an optimizer is built from it.
    """
    name = f"{os.fspath(path)!r} is not a readable ZeroGrads save file"
    if os.path.getsize(path) == 0:
        raise ValueError(f"{name}: it is empty (a write cut short?); use a backup copy or start again")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch's note on foreign pickle protocols
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights only load failed" not in str(error).lower():
            raise ValueError(f"{name}: it is not a torch save file ({_detail(error)})") from None
        raise ValueError(
            f"{name}: it holds Python objects other than tensors and plain values, which are "
            "refused (ZeroGrads.save writes none: the file comes from another program or was "
            "tampered with). Do not load it with weights_only=False: unpickling it could run any code"
        ) from None
    except Exception as error:
        raise ValueError(
            f"{name}: torch cannot read it ({_detail(error)}); it was not written by "
            "ZeroGrads.save, or it is cut short or corrupt"
        ) from None


def _detail(error: Exception) -> str:
    text = str(error)
    if isinstance(error, KeyError | EOFError) or not text:  # torch's bare "101", ""
        return type(error).__name__
    return f"{type(error).__name__}: {text[:200]}"


def checksum(state: dict[str, Any]) -> str:
    """SHA-256 of ``state`` without its ``"sha256"`` key, independent of how it was serialized."""
    digest = hashlib.sha256()
    _feed(digest, {key: value for key, value in state.items() if key != CHECKSUM})
    return digest.hexdigest()


def _feed(digest: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"tensor {tensor.dtype} {tuple(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        digest.update(f"dict {len(value)};".encode())
        for key in sorted(value, key=repr):
            _feed(digest, key)
            _feed(digest, value[key])
    elif isinstance(value, list | tuple):
        digest.update(f"{type(value).__name__} {len(value)};".encode())
        for item in value:
            _feed(digest, item)
    elif isinstance(value, bytes):
        digest.update(f"bytes {len(value)};".encode() + value)
    else:
        digest.update(f"{type(value).__name__} {value!r};".encode())


# ------------------------------------------------------------------------------ fields
class _Corrupt(ValueError):
    pass


def check_state(state: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming the first field of a ``state_dict`` that is missing or wrong.

    Checks the checksum when there is one, that every field a fresh optimizer saves is
    present, and the type, shape and range of each field the optimizer reads here.
    """
    if CHECKSUM in state and state[CHECKSUM] != checksum(state):
        raise ValueError(
            "the ZeroGrads state does not match its checksum: its content changed after it was "
            "saved (a disk error, an edit); use a backup copy or start again"
        )
    missing = sorted(set(_fields()) - set(state))
    if missing:
        raise ValueError(f"the ZeroGrads state lacks {', '.join(map(repr, missing))}: {_FIX}")
    try:
        _check_fields(state)
    except _Corrupt as error:
        raise ValueError(f"the ZeroGrads state's {error}: {_FIX}") from None


_FIX = "it was not written by ZeroGrads.state_dict() or was edited; use a backup copy or start again"


@functools.cache
def _fields() -> tuple[str, ...]:
    """The keys of a fresh optimizer's state (whatever this version saves)."""
    from ._optimizer import ZeroGrads

    return tuple(ZeroGrads(np.zeros(1), seed=0, estimator="es").state_dict())


def _check_fields(state: dict[str, Any]) -> None:
    config = state["config"]
    if not isinstance(config, dict):
        raise _Corrupt(f"'config' is {type(config).__name__}, not a dict of options")
    try:
        options = ZeroGradsConfig.from_dict(config)
    except (TypeError, ValueError) as error:
        raise _Corrupt(f"'config' is invalid ({error})") from None
    budget = state["budget"]
    if budget is not None and (not is_integer(budget) or budget < 1):
        raise _Corrupt(f"'budget' is {budget!r}, not a positive integer or None")
    x0 = _tensor(state, "x0", None)
    if x0.ndim != 1 or x0.numel() == 0:
        raise _Corrupt(f"'x0' has shape {tuple(x0.shape)}, not (d,)")
    dim = x0.numel()
    if not bool((_tensor(state, "scale", (dim,)) > 0).all()):
        raise _Corrupt("'scale' is not positive")
    for key in ("theta", "adam_m", "adam_v"):
        _tensor(state, key, (dim,))
    control = state["control"]
    if not isinstance(control, dict):
        raise _Corrupt(f"'control' is {type(control).__name__}, not a dict")
    if "log_shape" in control:  # the adaptive width's per-coordinate factors
        _tensor(control, "log_shape", (dim,))
    for key in ("lower", "upper", "gradient_average", "best_x"):
        if state[key] is not None:
            _tensor(state, key, (dim,), finite=key not in ("lower", "upper"))
    generator = state["generator"]
    size = torch.Generator().get_state().shape
    if not isinstance(generator, torch.Tensor) or generator.dtype != torch.uint8 or generator.shape != size:
        raise _Corrupt(f"'generator' is not a torch generator state ({size[0]} bytes)")
    queued = _samples(state, "queue", dim)
    _rows(state, "queue_x", queued, dim, finite=True)
    keys = state["pending_keys"]
    if not isinstance(keys, list) or not all(isinstance(k, bytes) and len(k) == 4 * dim for k in keys):
        raise _Corrupt(f"'pending_keys' is not a list of {4 * dim}-byte candidate keys")
    if _samples(state, "pending", dim) != len(keys):
        raise _Corrupt("'pending' does not hold one sample per pending key")
    _tensor(state, "buffer_losses", (_samples(state, "buffer", dim),), finite=False)
    counters = state["counters"]
    if not isinstance(counters, dict) or not all(is_integer(v) and v >= 0 for v in counters.values()):
        raise _Corrupt("'counters' is not a dict of non-negative integers")
    best_loss = state["best_loss"]
    if isinstance(best_loss, bool) or not isinstance(best_loss, float | int) or math.isnan(best_loss):
        raise _Corrupt(f"'best_loss' is {best_loss!r}, not a number")
    if (state["best_x"] is None) != (best_loss == math.inf):
        raise _Corrupt("'best_x' and 'best_loss' disagree (a best point has a finite loss)")
    _check_estimator(state["estimator"], options, dim)


def _tensor(
    state: dict[str, Any], key: str, shape: tuple[int, ...] | None, finite: bool = True
) -> torch.Tensor:
    """``state[key]``: a floating tensor of ``shape`` (any when None), finite if asked."""
    value = state[key]
    if not isinstance(value, torch.Tensor) or value.dtype not in _FLOAT_DTYPES:
        raise _Corrupt(f"{key!r} is {type(value).__name__}, not a floating-point tensor")
    if shape is not None and tuple(value.shape) != shape:
        raise _Corrupt(f"{key!r} has shape {tuple(value.shape)}, not {shape}")
    if finite and not bool(torch.isfinite(value).all()):
        raise _Corrupt(f"{key!r} holds NaN or inf")
    return value


def _rows(state: dict[str, Any], key: str, count: int, dim: int, finite: bool) -> None:
    """``state[key]``: ``count`` rows of ``dim`` values (saved as an empty vector when none)."""
    _tensor(state, key, (count, dim) if count else (0,), finite=finite)


def _samples(state: dict[str, Any], key: str, dim: int) -> int:
    """Check the candidates saved under ``key`` (regression inputs, offsets, sigmas, orders); their number."""
    samples = state[key]
    if not isinstance(samples, dict) or set(samples) != {"z", "offset", "sigma", "order"}:
        raise _Corrupt(f"{key!r} is not a dict of z, offset, sigma and order")
    sigma = _tensor(samples, "sigma", None)
    count = sigma.shape[0] if sigma.ndim else 0
    per_coordinate = sigma.ndim == 2 and sigma.shape[1] == dim  # a width with a shape: one per coordinate
    if not (sigma.ndim == 1 or per_coordinate) or not bool((sigma > 0).all()):
        raise _Corrupt(f"{key!r} has sigmas that are not positive (one per sample, or one per coordinate)")
    order = samples["order"]
    if not isinstance(order, torch.Tensor) or order.dtype != torch.int64 or tuple(order.shape) != (count,):
        raise _Corrupt(f"{key!r} has orders that are not {count} integers")
    try:
        _rows(samples, "z", count, dim, finite=True)
        _rows(samples, "offset", count, dim, finite=False)  # NaN for never-asked points
    except _Corrupt as error:
        raise _Corrupt(f"{key!r}: {error}") from None
    return count


def _check_estimator(estimator: Any, config: ZeroGradsConfig, dim: int) -> None:
    """Load the estimator's state into a fresh one of this configuration: shapes must fit."""
    from ._optimizer import ZeroGrads

    if not isinstance(estimator, dict):
        raise _Corrupt(f"'estimator' is {type(estimator).__name__}, not a dict")
    if estimator.get("gradient") is not None:
        _tensor(estimator, "gradient", (dim,))
    fresh = ZeroGrads(np.zeros(dim), config=config.replace(device="cpu"), seed=0)
    try:
        fresh._estimator.load_state_dict(copy.deepcopy(estimator))
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as error:
        raise _Corrupt(
            f"'estimator' does not fit a {config.estimator} estimator of dimension {dim} ({error})"
        ) from None
