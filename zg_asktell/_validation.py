"""Validation of the user's inputs: each bad value raises an error naming it and the fix."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sized

import numpy as np
import numpy.typing as npt
import torch

FloatArray = npt.NDArray[np.float64]
ArrayLike = npt.ArrayLike


def numeric(value: object) -> bool:
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):
        return False
    return array.dtype.kind in "iuf"


def losses_list(losses: object, n: int) -> list[float]:
    if isinstance(losses, (str, bytes)) or not hasattr(losses, "__len__"):
        if n == 1 and (losses is None or isinstance(losses, (int, float, np.number))):
            losses = [losses]
        else:
            raise TypeError(f"losses must be a sequence of {n} numbers (None for a failed evaluation)")
    array = np.asarray(losses, dtype=object)
    if array.ndim != 1:
        raise ValueError(
            f"losses have shape {array.shape}: give one loss per row of X, a flat sequence of {n} "
            "numbers (np.ravel them if they are one per row)"
        )
    values = list(array)
    if len(values) != n:
        raise ValueError(f"got {len(values)} losses for {n} candidates: pass exactly one loss per row of X")
    result = []
    for i, value in enumerate(values):
        if value is None:
            result.append(math.nan)
        elif isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
            raise TypeError(
                f"loss #{i} is {value!r} ({type(value).__name__}): losses must be real numbers, "
                "or None / NaN for a failed evaluation"
            )
        elif isinstance(value, (complex, np.complexfloating)):
            raise TypeError(f"loss #{i} is complex ({value!r}): losses must be real numbers")
        else:
            result.append(float(value))
    return result


def as_vector(value: ArrayLike, name: str) -> FloatArray:
    if not numeric(value):
        raise TypeError(f"{name} must be a numeric array, got {type(value).__name__}")
    array = np.array(value, dtype=np.float64, copy=True)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or inf; give finite values")
    return array


def broadcast(value: ArrayLike, dim: int, name: str) -> FloatArray:
    if not numeric(value):
        raise TypeError(f"{name} must be a number or a numeric array of length {dim}")
    array = np.asarray(value, dtype=np.float64)
    if array.ndim == 0:
        array = np.full(dim, float(array))
    if array.shape != (dim,):
        raise ValueError(f"{name} has shape {array.shape}; give a scalar or shape ({dim},) like x0")
    if np.any(np.isnan(array)):
        raise ValueError(f"{name} contains NaN; use +-inf for an open side")
    return array.copy()


def check_bounds(x0: FloatArray, lower: FloatArray | None, upper: FloatArray | None) -> None:
    if lower is not None and upper is not None and np.any(lower >= upper):
        i = int(np.argmax(lower >= upper))
        raise ValueError(f"lower[{i}]={lower[i]} must be below upper[{i}]={upper[i]}")
    j = first_outside(x0, lower, upper)
    if j is not None:
        raise ValueError(f"x0[{j}]={x0[j]} lies outside the bounds; start inside [lower, upper]")


def first_outside(x: FloatArray, lower: FloatArray | None, upper: FloatArray | None) -> int | None:
    """The first coordinate of ``x`` outside ``[lower, upper]``, None if all are inside."""
    outside = np.zeros(x.shape, dtype=bool)
    if lower is not None:
        outside |= x < lower
    if upper is not None:
        outside |= x > upper
    return int(np.argmax(outside)) if outside.any() else None


def initial_sigma(
    sigma: ArrayLike | None, dim: int, lower: FloatArray | None, upper: FloatArray | None
) -> FloatArray:
    if sigma is None:
        if lower is None or upper is None:
            return np.ones(dim)
        width = upper - lower
        return np.where(np.isfinite(width), 0.1 * width, 1.0)
    array = broadcast(sigma, dim, "sigma")
    if not np.all(np.isfinite(array) & (array > 0)):
        raise ValueError("sigma must be positive and finite (the initial smoothing width)")
    return array


def check_device(device: torch.device, name: str) -> None:
    """Raise ``ValueError`` unless tensors on ``device`` hold data that can be read back."""
    try:
        torch.zeros(1, device=device).cpu()
    except Exception as error:  # meta tensors, backends torch was built without...
        raise ValueError(
            f"device={name!r} cannot hold the optimizer's tensors ({type(error).__name__}: "
            f"{str(error)[:120]}); use 'cpu' or a CUDA GPU such as 'cuda:0'"
        ) from None


class ToldKeys:
    """Keys of the asked candidates told lately, the oldest forgotten beyond ``limit``."""

    def __init__(self, limit: int) -> None:
        self._keys: dict[bytes, None] = {}
        self._limit = limit

    def add(self, key: bytes) -> None:
        self._keys[key] = None
        if len(self._keys) > self._limit:
            del self._keys[next(iter(self._keys))]

    def __contains__(self, key: object) -> bool:
        return key in self._keys


def check_tell(
    points: FloatArray,
    key: Callable[[FloatArray], bytes],
    pending: Mapping[bytes, Sized],
    told: ToldKeys,
    lower: FloatArray | None,
    upper: FloatArray | None,
) -> None:
    """Raise ``ValueError`` for a row told again or a never-asked row outside the bounds.

    A row is an asked candidate while one with its key waits to be told; otherwise it is a
    never-asked point (extra data), which must lie inside the bounds and must not repeat an
    asked candidate already told (each asked candidate counts once).
    """
    keys = [key(x) for x in points]
    waiting = {k: len(pending[k]) for k in set(keys) if k in pending}
    consumed: set[bytes] = set()
    for i, (x, k) in enumerate(zip(points, keys)):
        if waiting.get(k, 0) > 0:
            waiting[k] -= 1
            consumed.add(k)
        elif k in told or k in consumed:
            raise ValueError(
                f"row {i} of X is a candidate that was already told: each asked candidate counts "
                "once. Tell each row of ask() once (to average a noisy loss, tell the mean)"
            )
        elif (j := first_outside(x, lower, upper)) is not None:
            raise ValueError(
                f"row {i} of X was never asked and lies outside the bounds (x[{j}]={x[j]}, "
                f"bounds [{_bound(lower, j, -np.inf)}, {_bound(upper, j, np.inf)}]): tell points "
                "inside [lower, upper] with their own loss"
            )


def _bound(bounds: FloatArray | None, j: int, default: float) -> float:
    return default if bounds is None else float(bounds[j])


def warn_past_budget(budget: int | None, told: int, telling: int) -> None:
    """Warn when a tell takes the evaluations past ``budget`` (they are used all the same)."""
    if budget is not None and told + telling > budget:
        warnings.warn(
            f"evaluations told past the budget of {budget}: they are used, at the final sigma and "
            "step size; give a larger budget to plan a longer run",
            RuntimeWarning,
            stacklevel=3,
        )
