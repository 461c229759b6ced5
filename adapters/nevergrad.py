"""Nevergrad backend: ZeroGrads by name, wherever Nevergrad takes an optimizer.

Importing this module registers in ``nevergrad.optimizers.registry``:

``"ZeroGrads"``
    :class:`ZeroGrads`, the ``"default"`` preset (a plain optimizer class).
``"ZeroGradsSchedule"``
    the default with the open-loop step and width of versions before 0.2 (preset ``"schedule"``).
``"ZeroGradsSurrogate"``
    the paper's design, Adam on the surrogate's gradient at theta (preset ``"surrogate"``).
``"ZeroGradsReference"``, ``"ZeroGradsReferenceHighDim"``
    the reference code's loop with its low- and high-dimensional networks
    (presets ``"reference"`` and ``"reference-highdim"``).
``"ZeroGradsES"``, ``"ZeroGradsESAveraged"``
    the surrogate's ablations: plain antithetic ES and ES with a running-average gradient
    (presets ``"es"`` and ``"es-averaged"``).

Other configurations come from :class:`ParametrizedZeroGrads`. The optimizer is a thin
layer over one :class:`zg_asktell.ZeroGrads` working in Nevergrad's *standardized* space,
where the parametrization's initial value is 0 and its mutation scale is 1 (see
``docs/nevergrad.md`` for bounds and discrete parameters).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from numbers import Real
from typing import Any

import nevergrad.common.typing as ngtp
import numpy as np
from nevergrad.optimization import base
from nevergrad.parametrization import parameter as p

import zg_asktell

__all__ = ["VARIANTS", "ParametrizedZeroGrads", "ZeroGrads"]

# Nevergrad's ``tell`` replaces NaN, inf and anything above this by this value.
_CLIPPED_LOSS = 5.0e20
# Budget fit of the batch (see _core_config): updates wanted per run, smallest batch.
_MIN_UPDATES = 25
_MIN_BATCH = 4


class ZeroGrads(base.Optimizer):  # type: ignore[misc]  # nevergrad is untyped
    """ZeroGrads (learned-surrogate gradient steps) as a Nevergrad optimizer.

    Args:
        parametrization: dimension or any Nevergrad parametrization.
        budget: evaluations planned; sigma is annealed over it (held without one).
        num_workers: parallel evaluations; each update's batch holds at least this many
            candidates (rounded up to even for antithetic pairs).
        preset: name of a :data:`zg_asktell.PRESETS` configuration.
        sigma: initial smoothing width in standardized units (1 = the parametrization's
            own mutation scale, e.g. a sixth of the range of a bounded scalar).
        options: :class:`zg_asktell.ZeroGradsConfig` fields overriding the preset.

    Small budgets shrink the batch (to allow ``_MIN_UPDATES`` updates; ``batch_size`` given
    in ``options`` is kept); the core scales its step to the budget. The wrapped
    :class:`zg_asktell.ZeroGrads` is created
    at the first ask or tell, seeded from ``parametrization.random_state``, so seeding that
    state reproduces a run.
    """

    def __init__(
        self,
        parametrization: base.IntOrParameter,
        budget: int | None = None,
        num_workers: int = 1,
        *,
        preset: str = "default",
        sigma: float = 1.0,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        if budget is not None and (
            isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1
        ):
            raise ValueError(f"budget={budget!r} must be a positive integer or None")
        super().__init__(parametrization, budget=budget, num_workers=num_workers)
        if self.num_workers < 1:
            raise ValueError(f"num_workers={num_workers!r} must be a positive integer")
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not 0 < sigma < math.inf:
            raise ValueError(f"sigma={sigma!r} must be a positive finite number (standardized units)")
        self._config = _core_config(preset, options, self.budget, self.num_workers)
        # Nevergrad tells asks it discards for violating a cheap constraint as inf (NaN
        # for the core): without them the gradient would only see the feasible side
        self._penalize_cheap_violations = True
        self._sigma = float(sigma)
        self._core: zg_asktell.ZeroGrads | None = None
        # standardized data of each asked candidate, by uid: told back exactly as asked,
        # even where the parametrization folds it (bounds) or samples from it (choices)
        self._asked_data: dict[str, np.ndarray] = {}

    @property
    def core(self) -> zg_asktell.ZeroGrads:
        """The wrapped optimizer (standardized space), created on first use."""
        if self._core is None:
            self._core = zg_asktell.ZeroGrads(
                np.zeros(self.dimension),
                self._sigma,
                budget=None if self.budget is None else int(self.budget),
                config=self._config,
                seed=int(self._rng.randint(2**31)),
            )
        return self._core

    def tell(
        self,
        candidate: p.Parameter,
        loss: ngtp.Loss,
        constraint_violation: ngtp.Loss | None = None,
        penalty_style: ngtp.ArrayLike | None = None,
    ) -> None:
        """Nevergrad's ``tell``, where a loss of -inf is a failed evaluation like NaN and +inf.

        Nevergrad clips NaN and +inf to a huge loss but keeps -inf, which would become its
        best candidate and recommendation while the core counts it as failed.
        """
        if np.ndim(loss) == 0 and isinstance(loss, Real | np.ndarray) and float(loss) == -math.inf:
            loss = math.nan
        super().tell(candidate, loss, constraint_violation, penalty_style)

    def _internal_ask_candidate(self) -> p.Parameter:
        data = self.core.ask(1)[0]
        candidate = self.parametrization.spawn_child().set_standardized_data(data)
        self._asked_data[candidate.uid] = data
        return candidate

    def _internal_tell_candidate(self, candidate: p.Parameter, loss: ngtp.FloatLoss) -> None:
        # Nevergrad's _internal_tell_not_asked ends here too: suggestions, points never
        # asked and its constraint solver's replacements are told by their own data
        data = self._asked_data.pop(candidate.uid, None)
        if data is None:
            data = candidate.get_standardized_data(reference=self.parametrization)
        with warnings.catch_warnings():
            # Nevergrad keeps its own budget; asks it discarded (cheap constraints) are told on top
            warnings.filterwarnings("ignore", "evaluations told past the budget", RuntimeWarning)
            self.core.tell(data[None], [_core_loss(loss)])

    def _internal_provide_recommendation(self) -> np.ndarray | None:
        # "best": None lets Nevergrad return the best evaluated candidate itself (exact
        # discrete draws included); "mean": the current theta.
        if self._core is None or self._config.recommendation == "best":
            return None
        return self._core.theta


class ParametrizedZeroGrads(base.ConfiguredOptimizer):  # type: ignore[misc]
    """Family of configured :class:`ZeroGrads` optimizers.

    Args:
        preset: name of a :data:`zg_asktell.PRESETS` configuration.
        sigma: initial smoothing width in standardized units.
        options: :class:`zg_asktell.ZeroGradsConfig` fields overriding the preset.

    Example:
        >>> import nevergrad as ng
        >>> from zg_asktell.adapters.nevergrad import ParametrizedZeroGrads
        >>> Wide = ParametrizedZeroGrads(sigma=2.0, options={"lr": 0.2})
        >>> opt = Wide(parametrization=ng.p.Array(shape=(3,)), budget=64)
    """

    def __init__(
        self, *, preset: str = "default", sigma: float = 1.0, options: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(ZeroGrads, locals())


#: Registered variant name -> preset.
VARIANTS: dict[str, str] = {
    "ZeroGradsSchedule": "schedule",
    "ZeroGradsSurrogate": "surrogate",
    "ZeroGradsReference": "reference",
    "ZeroGradsReferenceHighDim": "reference-highdim",
    "ZeroGradsES": "es",
    "ZeroGradsESAveraged": "es-averaged",
}


def _core_config(
    preset: str, options: Mapping[str, Any] | None, budget: int | None, num_workers: int
) -> zg_asktell.ZeroGradsConfig:
    """The preset with ``options``; the batch fitted to the budget and workers.

    Unless given in ``options``: the batch holds at least ``num_workers`` candidates and,
    budget permitting, is small enough for ``_MIN_UPDATES`` updates but not below
    ``_MIN_BATCH`` (two antithetic pairs: a lone pair with one failure carries no
    gradient under ``nonfinite_policy="worst"``). Large budgets keep the preset's batch.
    """
    if options is not None and not isinstance(options, Mapping):
        raise TypeError(f"options must be a mapping of ZeroGradsConfig fields, got {type(options).__name__}")
    # Nevergrad users expect the best evaluated candidate (exact discrete draws included).
    changes = {"recommendation": "best", **(options or {})}
    config = zg_asktell.ZeroGradsConfig.from_dict({**zg_asktell.preset(preset).to_dict(), **changes})
    pair = 2 if config.antithetic else 1
    if "batch_size" not in changes:
        batch = config.batch_size if budget is None else budget // _MIN_UPDATES // pair * pair
        batch = max(min(config.batch_size, max(batch, _MIN_BATCH)), -(-num_workers // pair) * pair)
        config = config.replace(batch_size=batch)
    return config


def _core_loss(loss: float) -> float:
    """Nevergrad's clipped failures (NaN, inf, huge) back to NaN: failed for the core."""
    return loss if loss < _CLIPPED_LOSS else math.nan


def _register(name: str, optimizer: base.OptCls) -> None:
    """Register ``name``, replacing our own earlier registration (module imported again)."""
    existing = base.registry.get(name)
    if existing is not None:
        owner = existing.__module__ if isinstance(existing, type) else type(existing).__module__
        if owner != __name__:
            raise RuntimeError(f"Nevergrad optimizer name {name!r} is already taken by {existing!r}")
        base.registry.unregister(name)
    base.registry.register_name(name, optimizer)


_register("ZeroGrads", ZeroGrads)
for _name, _preset in VARIANTS.items():
    _register(_name, ParametrizedZeroGrads(preset=_preset).set_name(_name))
