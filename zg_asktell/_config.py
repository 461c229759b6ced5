"""Hyper-parameters of the ZeroGrads optimizer: one frozen, validated object."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Estimator = Literal["control-variate", "surrogate", "es"]
NonFinitePolicy = Literal["worst", "drop"]
LossScale = Literal["running", "first"]
Control = Literal["adaptive", "schedule"]
Recommendation = Literal["auto", "best", "mean"]


@dataclass(frozen=True, kw_only=True)
class ZeroGradsConfig:
    """Every hyper-parameter of :class:`~zg_asktell.ZeroGrads`, validated on creation.

    All lengths are in the *normalised* space ``z = (x - x0) / sigma``, where the user's
    ``sigma`` (scalar or per coordinate) becomes 1: one set of defaults then serves
    problems of any scale.

    Args:
        batch_size: candidates per ``ask()`` and per update (even when ``antithetic``).
        antithetic: sample offsets in pairs ``+eps, -eps``.
        jitter: smoothing jitter as a fraction of sigma: each candidate is asked at
            ``X + xi`` with ``xi ~ N(0, (jitter*sigma)^2)`` while the regression input
            stays ``X`` (the reference code's Monte Carlo smoothing); 0 disables it.
        estimator: how the gradient of the smoothed loss is estimated from a batch:
            ``"control-variate"`` (ES on what an online MLP surrogate does not predict, plus
            the surrogate's own gradient at the samples: unbiased whatever the surrogate,
            and lower in variance the better it predicts), ``"surrogate"`` (step on the
            MLP's gradient at theta, as the paper does) or ``"es"`` (plain antithetic
            Gaussian smoothing, no surrogate).
        gradient_averaging: running-average factor rho in [0, 1) applied to the
            gradient before the Adam step (0 disables it).
        hidden_width: surrogate MLP width W; ``None`` picks it from the dimension d: 64,
            or 16 from ``d = 10,000`` on, where the first layer (``d (1 + 2L) W`` weights)
            sets the optimizer's time and a narrower one measured no worse
            (docs/calibration.md).
        hidden_layers: number of hidden layers of width W (at least 1).
        ensemble_size: number of independently initialised surrogate MLPs, each fit on its
            own; the surrogate ``h`` is their mean (K times the surrogate's cost).
        encoding_frequencies: positional encoding octaves L (input width d(1+2L)); 0 feeds
            the raw normalised coordinates.
        zero_init_output: start the last layer at zero, so the surrogate's gradient starts
            at zero instead of at the random bias of an untrained network.
        weight_decay: decoupled (AdamW) weight decay of the surrogate.
        lr_surrogate: Adam learning rate of the surrogate weights.
        fit_steps: Adam steps on the surrogate per update (k_phi).
        fit_before_step: ``"surrogate"`` only: fit on the newest batch before stepping
            theta (the reference steps first and fits after). ``"control-variate"`` always
            predicts a batch before it fits on it.
        theta_steps: Adam steps on theta per update (k_theta); ``"surrogate"`` only.
        control: what sets the step and the sampling width: ``"adaptive"`` (closed loop:
            both adapted from the losses told, the user's sigma only a first guess; no budget
            needed) or ``"schedule"`` (the open-loop rule of earlier versions: sigma annealed
            to ``sigma_final`` over the budget, the step from the horizon and dimension).
            ``"adaptive"`` assumes a fresh gradient estimate per update, normalised by the
            spread of such estimates: with
            ``estimator="surrogate"`` or ``gradient_averaging`` above 0 use ``"schedule"``
            (as their presets do). Rules and measurements: ``zg_asktell._control``,
            docs/benchmarks.md.
        lr: Adam step size on theta in units of the current sigma (normalised space). With
            ``control="adaptive"`` the starting step (``None``: the horizon step below, at most
            0.5, with a budget; 0.1 without), adapted from there between its cap (0.5, lower
            beyond 200 updates) and 1/30 of it;
            with ``"schedule"`` the fixed step (``None``: ``2.5 / sqrt(budget / batch_size)``
            clipped to [0.02, 1] when the budget is known, else 0.1; either times
            ``sqrt(1 - gradient_averaging)`` and, above 3,072 variables, ``sqrt(3072 / d)``).
        sigma_final: ``"schedule"`` only: sigma at the end of the budget as a fraction of the
            initial sigma; annealed geometrically over ``budget`` evaluations (held when no
            budget is given).
        sigma_hold: ``"schedule"`` only: fraction of the budget during which sigma is held at
            its start value before the geometric anneal begins (PRDPT holds for half).
        step_follows_sigma: ``"schedule"`` only: scale the step size with the annealed sigma.
        loss_scale: what losses are divided by before the estimators see them: a
            ``"running"`` average of the batches' loss spread (Adam's step is then set by
            ``lr`` alone), or the ``"first"`` batch's spread, so Adam sees the raw loss and its
            second moment shortens the step as the loss spread shrinks, as in PRDPT.
        nonfinite_policy: ``"worst"`` replaces a NaN/inf/missing loss by the worst finite
            loss of its update (pushes away from failing regions); ``"drop"`` ignores it.
        recommendation: what ``recommend()`` returns: the current ``"mean"`` theta, the
            ``"best"`` evaluated point, or ``"auto"``: theta until the budget is spent, then
            the best evaluated point. With a budget, the last batch evaluates theta itself,
            so at the end "best" is never worse than theta's last evaluation. Use "mean" on
            noisy losses, where the best evaluation is biased by luck.
        device: torch device of the surrogate and of theta (``"cpu"``, ``"cuda"``...).
        threads: torch's intra-op CPU threads during ``ask`` and ``tell`` (restored after);
            ``None`` leaves torch's setting. One thread avoids oversubscription, which made
            the optimizer about 50x slower while other processes used the cores.
        dtype: ``"float32"`` or ``"float64"`` for torch computations.
    """

    batch_size: int = 16
    antithetic: bool = True
    jitter: float = 0.0
    estimator: Estimator = "control-variate"
    gradient_averaging: float = 0.0
    hidden_width: int | None = None
    hidden_layers: int = 2
    ensemble_size: int = 1
    encoding_frequencies: int = 3
    zero_init_output: bool = True
    weight_decay: float = 0.1
    lr_surrogate: float = 1e-3
    fit_steps: int = 3
    fit_before_step: bool = True
    theta_steps: int = 1
    control: Control = "adaptive"
    lr: float | None = None
    sigma_final: float = 0.2
    sigma_hold: float = 0.0
    step_follows_sigma: bool = True
    loss_scale: LossScale = "running"
    nonfinite_policy: NonFinitePolicy = "worst"
    recommendation: Recommendation = "auto"
    device: str = "cpu"
    threads: int | None = 1
    dtype: Literal["float32", "float64"] = "float32"

    def __post_init__(self) -> None:
        for name in ("antithetic", "zero_init_output", "fit_before_step", "step_follows_sigma"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}={getattr(self, name)!r} must be True or False")
        _check_int(self, "batch_size", 2 if self.antithetic else 1)
        if self.antithetic and self.batch_size % 2:
            raise ValueError(
                f"batch_size={self.batch_size} must be even with antithetic=True "
                "(candidates come in +eps/-eps pairs); use an even size or antithetic=False"
            )
        _check_choice(self, "estimator", ("control-variate", "surrogate", "es"))
        _check_choice(self, "nonfinite_policy", ("worst", "drop"))
        _check_choice(self, "loss_scale", ("running", "first"))
        _check_choice(self, "control", ("adaptive", "schedule"))
        _check_choice(self, "recommendation", ("auto", "best", "mean"))
        _check_choice(self, "dtype", ("float32", "float64"))
        if self.hidden_width is not None:
            _check_int(self, "hidden_width", 1)
        _check_int(self, "hidden_layers", 1)
        _check_int(self, "ensemble_size", 1)
        _check_int(self, "encoding_frequencies", 0)
        _check_int(self, "fit_steps", 1)
        _check_int(self, "theta_steps", 1)
        if self.estimator != "surrogate" and self.theta_steps != 1:
            raise ValueError(
                f"theta_steps={self.theta_steps} needs estimator='surrogate' to re-evaluate "
                f"the gradient; with estimator={self.estimator!r} use theta_steps=1"
            )
        if self.lr is not None:
            _check_float(self, "lr", low=0.0, low_open=True)
        for name in ("lr_surrogate", "sigma_final"):
            _check_float(self, name, low=0.0, low_open=True)
        for name in ("jitter", "weight_decay"):
            _check_float(self, name, low=0.0)
        _check_float(self, "gradient_averaging", low=0.0, high=1.0)
        _check_float(self, "sigma_hold", low=0.0, high=1.0)
        if self.sigma_final > 1.0:
            raise ValueError(
                f"sigma_final={self.sigma_final} must be at most 1 (a fraction of the "
                "initial sigma; sigma only shrinks)"
            )
        if self.threads is not None:
            _check_int(self, "threads", 1)
        if not isinstance(self.device, str) or not self.device:
            raise ValueError(f"device={self.device!r} must be a torch device name like 'cpu'")

    def replace(self, **changes: Any) -> ZeroGradsConfig:
        """A copy with ``changes`` applied (and validated); unknown names raise ``ValueError``."""
        return self.from_dict({**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dictionary of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ZeroGradsConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown ZeroGradsConfig option(s): {sorted(unknown)}")
        return cls(**values)


def _check_int(config: ZeroGradsConfig, name: str, low: int) -> None:
    value = getattr(config, name)
    if not is_integer(value) or value < low:
        raise ValueError(f"{name}={value!r} must be an integer >= {low}")


def _check_float(
    config: ZeroGradsConfig,
    name: str,
    low: float,
    high: float | None = None,
    low_open: bool = False,
) -> None:
    value = getattr(config, name)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and (value > low if low_open else value >= low)
    ok = ok and (high is None or value < high)
    if not ok:
        bound = f"> {low}" if low_open else f">= {low}"
        if high is not None:
            bound += f" and < {high}"
        raise ValueError(f"{name}={value!r} must be a finite number {bound}")


def _check_choice(config: ZeroGradsConfig, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(config, name)
    if value not in choices:
        raise ValueError(f"{name}={value!r} must be one of {list(choices)}")


_WIDE, _NARROW, _NARROW_FROM_DIM = 64, 16, 10_000  # hidden_width=None (docs/calibration.md)


def surrogate_width(config: ZeroGradsConfig, dim: int) -> int:
    """The surrogate's hidden width for dimension ``dim`` (``hidden_width`` or its rule)."""
    if config.hidden_width is not None:
        return config.hidden_width
    return _WIDE if dim < _NARROW_FROM_DIM else _NARROW


def is_integer(value: object) -> bool:
    """True for Python and numpy integers, False for bools."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


# The reference code's loop (low-dimensional settings): constant sigma, a fixed step of
# 1e-3 in parameter units at sigma=0.33 (here 0.003 sigma), plain init, no decay, theta
# stepped before the fit on the newest batch, jitter 0.1 sigma.
_REFERENCE = ZeroGradsConfig(
    estimator="surrogate",
    hidden_width=64,
    batch_size=8,
    jitter=0.1,
    encoding_frequencies=0,
    zero_init_output=False,
    weight_decay=0.0,
    fit_before_step=False,
    control="schedule",
    lr=0.003,
    sigma_final=1.0,
    step_follows_sigma=False,
)

PRESETS: dict[str, ZeroGradsConfig] = {
    # The library's default: ES with the surrogate as a control variate, the best surrogate
    # design measured (docs/surrogate.md, docs/calibration.md).
    "default": ZeroGradsConfig(),
    # The default with the open-loop step and width of versions before 0.2 (the comparison
    # that shows what the closed loop changes).
    "schedule": ZeroGradsConfig(control="schedule"),
    # The paper's design: Adam on the surrogate's gradient at theta, with the open-loop step
    # and width. The adaptive controller reads its step signal off a fresh estimate per
    # update, independent of the last step; a warm-started surrogate's gradient is not
    # (docs/benchmarks.md, "Presets whose gradient carries memory").
    "surrogate": ZeroGradsConfig(estimator="surrogate", control="schedule"),
    "reference": _REFERENCE,
    # The reference's high-dimensional network: 8 layers of 128 with L=6 encoding.
    "reference-highdim": _REFERENCE.replace(
        batch_size=20, hidden_width=128, hidden_layers=7, encoding_frequencies=6, lr_surrogate=1e-4, lr=0.004
    ),
    # Plain antithetic ES with the default step and width: the surrogate's ablation.
    "es": ZeroGradsConfig(estimator="es"),
    # ES with a running average of its gradient (the low-pass filter the surrogate acts as),
    # open loop: Adam's second moment is then the averaged gradient's, smaller than the fresh
    # estimate's spread that the adaptive step's signal is normalised by.
    "es-averaged": ZeroGradsConfig(estimator="es", gradient_averaging=0.9, control="schedule"),
}


def preset(name: str, **changes: Any) -> ZeroGradsConfig:
    """The named preset (see ``PRESETS``) with optional ``changes``."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name].replace(**changes)
