"""From one update's losses to the targets the estimators see: centred, scaled, outliers tamed.

Policy (docs/external.md, "Penalties"): losses are first limited to +-1e300 (so that their
differences stay finite), then measured against the batch's median in units of a running
spread; deviations beyond ``OUTLIER_LIMIT`` spreads are clipped there. A penalty (1e10,
1e300, ``sys.float_info.max``) or a spurious -1e308 therefore still ranks last (or first)
in its batch and pushes the step away from (or toward) it, but weighs at most as much as
a few ordinary losses, and a batch of outliers moves the running spread by one entry of ten.
The told value itself is kept as is for ``best_loss`` and the run logs.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
LOSS_LIMIT = 1e300  # losses beyond +-this count as +-this (differences of two stay finite)
OUTLIER_LIMIT = 5.0  # deviations from the batch median clipped at this many running spreads
_MEMORY = 10  # batches whose spreads the running spread is the median of


class LossScaler:
    """Turns each update's finite losses into centred, scaled, clipped targets.

    Args:
        mode: ``"running"`` (median spread of recent batches) or ``"first"`` (the first
            batch's spread kept: Adam then sees the raw loss scale, as in PRDPT).
    """

    def __init__(self, mode: Literal["running", "first"]) -> None:
        self.mode = mode
        self.spreads: list[float] = []  # of recent batches, positive, oldest first

    @property
    def scale(self) -> float | None:
        """The running spread (the lower median of the recent batches'), None before any."""
        return sorted(self.spreads)[(len(self.spreads) - 1) // 2] if self.spreads else None

    def targets(self, losses: FloatArray) -> FloatArray:
        """Targets of one update's finite ``losses``: zero mean, about unit spread."""
        limited = np.clip(losses, -LOSS_LIMIT, LOSS_LIMIT)
        deviations = limited - np.median(limited)
        reference = self.scale if self.scale is not None else _typical(deviations)
        if reference > 0:
            deviations = np.clip(deviations, -OUTLIER_LIMIT * reference, OUTLIER_LIMIT * reference)
        spread = _std(deviations)
        if spread > 0 and (not self.spreads or self.mode == "running"):
            self.spreads = [*self.spreads, spread][-_MEMORY:]
        scale = self.scale or 1.0
        targets: FloatArray = np.clip(deviations / scale, -OUTLIER_LIMIT, OUTLIER_LIMIT)
        centred: FloatArray = targets - targets.mean()
        return centred

    def state_dict(self) -> dict[str, Any]:
        return {"spreads": list(self.spreads)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.spreads = [float(spread) for spread in state["spreads"]]


def ties(losses: FloatArray) -> float:
    """How flat the batch is: the share of its other rows that share the most common loss,
    1 when every loss is equal (a plateau: the width is below the loss's steps), 0 when all
    differ. Equal antithetic pairs alone do not count: an even loss ties them anywhere."""
    if len(losses) < 2:
        return 0.0
    _, counts = np.unique(losses, return_counts=True)
    return float(counts.max() - 1) / (len(losses) - 1)


def _typical(deviations: FloatArray) -> float:
    """The median non-zero absolute deviation: a first spread that one outlier cannot set."""
    nonzero = np.abs(deviations[deviations != 0])
    return float(np.median(nonzero)) if nonzero.size else 0.0


def _std(values: FloatArray) -> float:
    """Standard deviation without overflow for values up to ~1e308."""
    peak = float(np.abs(values).max()) if values.size else 0.0
    return peak * float(np.std(values / peak)) if peak > 0 else 0.0
