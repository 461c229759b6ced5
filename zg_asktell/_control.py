"""Step size and sampling width of ZeroGrads: the rule that sets both, one update at a time.

:class:`ZeroGrads` asks its controller for the current ``sigma`` (the sampling width as a
factor of the user's) and ``lr`` (the Adam step in normalised units, sigma included), and
shows it one :class:`Observation` per update. Two rules ship:

* :class:`Adaptive` (``control="adaptive"``, the default): closed loop, no budget needed.
  The step grows while the gradient at the new point still points along the last step
  (the step was too short) and shrinks when it points back (overshoot, or noise: an
  automatic anneal). The width shrinks when the batch ranks its closer samples first
  (curvature dominates the slope: the smoothing biases the gradient) and grows when
  antithetic pairs tie (a plateau: the width is below the loss's steps) or the step, held
  at its cap of half a width, still asks to grow; it narrows when the step, held at its
  floor (1/30 of the cap), still asks to shrink (an anneal of the width). The same
  ranking, read coordinate by coordinate, gives the width a shape: narrower where the loss
  is steep, wider where it is flat (as SNES and separable CMA-ES adapt one width per
  variable); the step follows it. A run of more than 200 updates caps the step lower (by
  (200/updates)**0.75 with a budget, the anytime 1/sqrt(updates) law without one); a long
  planned run also spreads the ranking and plateau terms over its length and anneals the
  step.
* :class:`Schedule` (``control="schedule"``): the open-loop rule of earlier versions:
  sigma annealed geometrically over the budget, a step scaled to the horizon and dimension.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from ._config import ZeroGradsConfig


@dataclass(frozen=True)
class Observation:
    """What one update shows the controller (normalised space, sigma units).

    Attributes:
        offsets: (n, d) unit offsets of the update's asked rows, antithetic pairs adjacent.
        targets: (n,) their scaled losses (lower is better).
        ties: how flat the batch is: the share of its other rows sharing its most common
            loss, in [0, 1] (1: every loss equal).
        gradient: (d,) the update's gradient estimate in units of the current width (of
            each coordinate's, when the width has a shape).
        spread: (d,) per-coordinate spread of recent gradients (Adam's ``sqrt(v_hat)``).
        last_step: (d,) the previous update's change of theta, or None before any.
    """

    offsets: Tensor
    targets: Tensor
    ties: float
    gradient: Tensor
    spread: Tensor
    last_step: Tensor | None


class Controller(Protocol):
    """Sets the sampling width and the step; ``ZeroGrads`` calls ``observe`` once per update."""

    scaled_gradient: bool  # Adam sees the gradient in units of each coordinate's current width

    def sigma(self, told: int) -> float:
        """Sampling width as a factor of the user's sigma, after ``told`` evaluations."""

    def lr(self, told: int) -> float:
        """Adam step size in normalised units (sigma included), after ``told`` evaluations."""

    def shape(self) -> Tensor | None:
        """Per-coordinate factor of the width and the step (geometric mean 1 where no box
        caps it, float64 on the CPU), or None when both are the same in every coordinate."""

    def observe(self, observation: Observation) -> None:
        """Take in one update (before its step is taken)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


# Schedule (docs/calibration.md): the best ES step at 60, 190 and 625 updates was about 0.4,
# 0.2 and 0.1 sigma, i.e. 2.5 / sqrt(updates); it was calibrated up to 3,072 variables and
# shrinks as 1 / sqrt(d) beyond.
_HORIZON_LR, _MIN_LR, _MAX_LR, _DEFAULT_LR = 2.5, 0.02, 1.0, 0.1
_CALIBRATED_DIM = 3072


class Schedule:
    """Open loop: sigma annealed from 1 to ``sigma_final`` over the budget (after
    ``sigma_hold`` of it), the step ``2.5 / sqrt(updates)`` clipped to [0.02, 1] (0.1 without
    a budget), times ``sqrt(3072 / d)`` above 3,072 variables, times sigma when
    ``step_follows_sigma``; an explicit ``lr`` replaces the rule. Adam sees the raw
    gradient, as the rule was calibrated with."""

    scaled_gradient = False

    def __init__(self, config: ZeroGradsConfig, dim: int, budget: int | None) -> None:
        self.config, self.budget = config, budget
        if config.lr is not None:
            self.base = config.lr
        else:
            # An averaged gradient is steadier, so Adam's normalised step is longer: the best
            # es-averaged step (rho 0.9) was about a third of plain ES's.
            averaging = math.sqrt(1 - config.gradient_averaging)
            dimension = min(1.0, math.sqrt(_CALIBRATED_DIM / dim))
            self.base = averaging * dimension * _horizon_lr(config, budget)

    def sigma(self, told: int) -> float:
        if self.budget is None:
            return 1.0
        hold = self.config.sigma_hold
        progress = min(1.0, max(0.0, told / self.budget - hold) / (1.0 - hold))
        return float(self.config.sigma_final**progress)

    def lr(self, told: int) -> float:
        return self.base * (self.sigma(told) if self.config.step_follows_sigma else 1.0)

    def shape(self) -> Tensor | None:
        return None

    def observe(self, observation: Observation) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


# Adaptive rule constants, chosen on part of the suite and judged on the rest
# (docs/robustness.md, "How the constants were chosen").
_STEP_RATE = 0.05  # log-step change per update per unit of the normalised directional signal
_STEP_SIGNAL_CLIP = 3.0  # the signal is N(0, 1) under pure noise: clipped against rare outliers
_WIDTH_RATE = 0.1  # log-sigma change per update per unit of the ranking signal
# A planned run longer than _HORIZON updates slows the width's ranking and plateau terms by
# _HORIZON / updates (their total drift stays that of a 200-update run: on a sum of stairs the
# ranking signal keeps its size at every width, and sigma would fall through them
# exponentially), caps the step lower (below: a steady step is what a long noisy run needs,
# the directional signal's greed would take longer ones), and the step asks for a directional
# signal of _STEP_BIAS * (1 - that share) before it grows (it anneals).
_HORIZON = 200
_STEP_BIAS = 0.1
_PLATEAU_RATE = 0.2  # log-sigma growth per update when every loss of the batch is equal
_LOG_LR_CAP = math.log(0.5)  # the step: at most half a sigma per coordinate
_STEP_SPAN = 30.0  # and at least 1/30 of its cap
# Beyond _HORIZON updates the cap is scaled by (_HORIZON / updates) ** this: the planned updates
# (0.75: a known horizon affords a shorter steady step, 0.09 sigma at 1,875 updates), or
# without a budget those so far (the anytime 1 / sqrt(t) bound).
_CAP_EXPONENT, _ANYTIME_CAP_EXPONENT = 0.75, 0.5
# A step held at its cap while its signal asks for more widens sigma by this share of the
# growth it was refused (the width, not the step, is then what keeps the steps short); one
# held at its floor while its signal asks for less narrows sigma by the same share (the
# smoothed gradient at this width no longer tells where to go: the width must anneal).
_WIDTH_FROM_STEP = 0.5
_LOG_SIGMA_RANGE = (math.log(1e-6), math.log(1e3))
# The width's shape: log-width change per coordinate per update per unit of that coordinate's
# ranking signal, relative to the mean over coordinates (SNES's rate at 1,000 variables).
_SHAPE_RATE = 0.03
_LOG_SHAPE_RANGE = (math.log(1e-3), math.log(1e3))


class Adaptive:
    """Closed loop: the step from the sign of the new gradient along the last step, the
    width (and its shape across coordinates) from the batch's ranking of near and far
    samples, from plateaus and from a step held at its cap.

    Step: ``z = -g_t . s_{t-1} / sqrt(sum v_i s_i^2)`` is the directional derivative of the
    smoothed loss at the new point along the last step ``s``, in units of its noise (a fresh
    batch's estimate ``g_t`` is independent of the past step, so ``z`` is unbiased and N(0, 1)
    on pure noise). ``log lr += rate * clip(z)``: longer while steps keep going downhill,
    shorter on overshoot and as noise takes over near a minimum (hypergradient / Pflug).

    Width: the rank-weighted excess of the samples' squared radii, ``sum_k w_k (|u_k|^2 - d) /
    sqrt(2 d)`` with SNES's fitness-shaping weights, is negative when near samples rank first
    (sigma too wide for the loss's curvature) and near zero on a slope or on noise; equal
    losses across the batch (a plateau) add growth. The step is capped at half a sigma per
    coordinate; growth the cap refuses widens sigma by half as much (as a long evolution
    path does in CMA-ES: the samples are too close together for the distance theta still
    travels). Its floor is 1/30 of the cap; shrinking the floor refuses narrows sigma by half
    as much (no step length the span allows pays at this width: the smoothed loss's
    minimum is reached, a narrower one finds the loss's own). ``log sigma += h (rate *
    signal + plateau_rate * ties) + 0.5 refused``, with ``h`` the horizon's share below.
    Adam sees the gradient in units of each coordinate's current width, so its moments
    carry across changes of width.

    Shape: the same ranking per coordinate, ``r_i = sum_k w_k (u_ki^2 - 1) / sqrt(2)`` (the
    width's signal is ``sum_i r_i / sqrt(d)``), moves that coordinate's log-width by
    ``sqrt(h) * 0.03 * (r_i - mean r)``: a per-coordinate factor of geometric mean 1 (SNES's
    width update, with its rate at 1,000 variables), which the step follows (``z`` measures
    the last step in units of the shape, as updated by this observation). Where a
    coordinate barely matters the shape random-walks; ``sqrt(h)`` keeps that walk's spread
    over a long run at that of a 200-update run while its drift keeps growing. No
    coordinate's width exceeds its cap (a quarter of its box): the cap applies when the
    shape is read, so a capped coordinate narrows below it only once its shape has.

    Horizon: a budget of more than 200 updates scales the ranking and plateau terms by
    ``h = 200 / updates`` (not the step bounds' widening and narrowing), lowers the step's
    cap to ``0.5 h ** 0.75`` of a width (and its floor with it) and makes the step anneal
    (``z - 0.1 (1 - h)``: at the floor, the width anneals); up to 200 updates ``h = 1``
    and none applies. Without a budget only the cap follows, with the updates observed so
    far in place of the planned ones (the step's anytime ``1 / sqrt(t)`` bound)
    (docs/robustness.md, "30,000 evaluations").
    """

    scaled_gradient = True

    def __init__(
        self, config: ZeroGradsConfig, dim: int, budget: int | None, max_sigma: float | Tensor
    ) -> None:
        self.dim = dim
        caps = torch.broadcast_to(torch.as_tensor(max_sigma, dtype=torch.float64), (dim,))
        # Each coordinate's width stays below its cap, sigma itself below the median cap (inf
        # where most coordinates are unbounded).
        self.max_log_widths = caps.log().clamp(max=_LOG_SIGMA_RANGE[1])
        self.max_log_sigma = min(_LOG_SIGMA_RANGE[1], math.log(float(np.median(caps.numpy()))))
        self.log_sigma = min(0.0, self.max_log_sigma)  # the user's sigma, unless wider than the box allows
        # The share of the width rule a planned run gets: 1 without a budget or up to _HORIZON updates.
        self.planned = _planned_updates(config, budget)
        self.horizon = 1.0 if self.planned is None else min(1.0, _HORIZON / self.planned)
        self.observed = 0  # updates observed
        self.log_lr = _clamp(math.log(config.lr or _horizon_lr(config, budget)), self._log_lr_range())
        self.log_shape = torch.zeros(dim, dtype=torch.float64)

    def _log_lr_range(self) -> tuple[float, float]:
        """The step's bounds: at most half a width, beyond 200 updates times ``(200 /
        planned) ** 0.75`` or, without a budget, ``sqrt(200 / observed)``; at least 1/30 of
        that."""
        if self.planned is None:
            updates, exponent = float(self.observed), _ANYTIME_CAP_EXPONENT
        else:
            updates, exponent = self.planned, _CAP_EXPONENT
        upper = _LOG_LR_CAP + exponent * math.log(min(1.0, _HORIZON / max(1.0, updates)))
        return upper - math.log(_STEP_SPAN), upper

    def shape(self) -> Tensor:
        # No coordinate wider than its box allows.
        return torch.exp(self.log_shape.clamp(max=self.max_log_widths - self.log_sigma))

    def sigma(self, told: int) -> float:
        return math.exp(self.log_sigma)

    def lr(self, told: int) -> float:
        return math.exp(self.log_lr + self.log_sigma)

    def observe(self, observation: Observation) -> None:
        self.observed += 1
        coordinates = _coordinate_signals(observation.targets, observation.offsets)
        width = _WIDTH_RATE * float(coordinates.sum()) / math.sqrt(self.dim)
        width = self.horizon * (width + _PLATEAU_RATE * observation.ties)
        if self.dim > 1:
            # sqrt(h): over a long run the shape's drift keeps growing, its noise does not
            share = math.sqrt(self.horizon)
            log_shape = self.log_shape + share * _SHAPE_RATE * (coordinates - coordinates.mean())
            log_shape = log_shape.clamp(*_LOG_SHAPE_RANGE)
            self.log_shape = log_shape - log_shape.mean()
        if observation.last_step is not None:
            step = observation.last_step.double().cpu() / self.shape()  # in units of the width's shape
            noise = float(torch.sqrt(((observation.spread.double().cpu() * step) ** 2).sum()))
            if noise > 0:
                signal = -float(observation.gradient.double().cpu() @ step) / noise
                clipped = max(-_STEP_SIGNAL_CLIP, min(_STEP_SIGNAL_CLIP, signal))
                clipped -= _STEP_BIAS * (1 - self.horizon)  # a long run's step anneals
                asked = _STEP_RATE * clipped
                wanted = self.log_lr + asked
                self.log_lr = _clamp(wanted, self._log_lr_range())
                # A step at its cap that still asks to grow: the samples are too close together;
                # at its floor and still asking to shrink: too far apart. Only the change this
                # update asked for counts (a bound that moves is no such sign).
                refused = wanted - self.log_lr
                width += _WIDTH_FROM_STEP * min(max(refused, min(0.0, asked)), max(0.0, asked))
        self.log_sigma = _clamp(self.log_sigma + width, (_LOG_SIGMA_RANGE[0], self.max_log_sigma))

    def state_dict(self) -> dict[str, Any]:
        return {
            "log_lr": self.log_lr,
            "log_sigma": self.log_sigma,
            "log_shape": self.log_shape.clone(),
            "observed": self.observed,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.log_lr, self.log_sigma = float(state["log_lr"]), float(state["log_sigma"])
        if "log_shape" in state:
            self.log_shape = state["log_shape"].double().cpu().clone()
        self.observed = int(state.get("observed", 0))


def _horizon_lr(config: ZeroGradsConfig, budget: int | None) -> float:
    """``2.5 / sqrt(updates)`` clipped to [0.02, 1] with a budget, else 0.1: the schedule's
    step, and the adaptive step's start (a short budget cannot wait for it to grow)."""
    updates = _planned_updates(config, budget)
    if updates is None:
        return _DEFAULT_LR
    return min(_MAX_LR, max(_MIN_LR, _HORIZON_LR / math.sqrt(updates)))


def _planned_updates(config: ZeroGradsConfig, budget: int | None) -> float | None:
    """Updates the budget holds (at least 1), None without a budget."""
    return None if budget is None else max(1.0, budget / config.batch_size)


def _clamp(value: float, bounds: tuple[float, float]) -> float:
    return min(bounds[1], max(bounds[0], value))


def utilities(targets: Tensor) -> Tensor:
    """SNES's fitness-shaping weights by rank (lowest target first), summing to zero; tied
    targets share the mean weight of their ranks, so a batch of equal losses weighs nothing."""
    n = len(targets)
    ranks = torch.arange(1, n + 1, dtype=torch.float64)
    raw = torch.clamp(math.log(n / 2 + 1) - torch.log(ranks), min=0.0)
    weights = raw / raw.sum() - 1.0 / n
    order = torch.argsort(targets.double().cpu(), stable=True)
    ordered = targets.double().cpu()[order]
    _, inverse = torch.unique_consecutive(ordered, return_inverse=True)
    shared = torch.zeros(int(inverse.max()) + 1, dtype=torch.float64).index_add_(0, inverse, weights)
    counts = torch.bincount(inverse).double()
    result = torch.empty(n, dtype=torch.float64)
    result[order] = (shared / counts)[inverse]
    return result


def _coordinate_signals(targets: Tensor, offsets: Tensor) -> Tensor:
    """Per coordinate, ``sum_k w_k (u_ki^2 - 1) / sqrt(2)``: negative where near samples rank first."""
    if len(targets) < 2:
        return torch.zeros(offsets.shape[1], dtype=torch.float64)
    return (utilities(targets) @ (offsets.double().cpu() ** 2 - 1)) / math.sqrt(2)


def make_controller(
    config: ZeroGradsConfig, dim: int, budget: int | None, max_sigma: float | Tensor
) -> Controller:
    """The controller ``config.control`` names; ``max_sigma`` (a factor of the user's sigma,
    one per coordinate or one for all, inf where unbounded) caps the adaptive width."""
    if config.control == "schedule":
        return Schedule(config, dim, budget)
    return Adaptive(config, dim, budget, max_sigma)
