"""Shared helpers of the zg_asktell core tests (and the hypothesis profile).

Test modules import the plain helpers (``from conftest import ...``); hypothesis tests
use them directly instead of function-scoped fixtures.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import settings

from zg_asktell import ZeroGrads

FloatArray = npt.NDArray[np.float64]

# Deterministic, deadline-free hypothesis runs: tiny optimizers still take milliseconds.
settings.register_profile("zg_asktell", deadline=None, derandomize=True, database=None, max_examples=15)
settings.load_profile("zg_asktell")

# A small surrogate and batch keep every update in the millisecond range.
FAST: dict[str, Any] = {"batch_size": 4, "hidden_width": 8, "hidden_layers": 1, "encoding_frequencies": 1}

# Every gradient estimator, the default first.
ESTIMATORS = ("control-variate", "surrogate", "es")

# Configurations the state and determinism tests run under (ids -> options).
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "control-variate-averaged-f64": {"gradient_averaging": 0.7, "dtype": "float64"},
    "control-variate-ensemble": {"ensemble_size": 3},
    "surrogate": {"estimator": "surrogate"},
    "surrogate-averaged-f64": {
        "estimator": "surrogate",
        "gradient_averaging": 0.7,
        "dtype": "float64",
        "fit_before_step": False,
    },
    "surrogate-jitter-budget": {"estimator": "surrogate", "jitter": 0.1, "theta_steps": 2, "budget": 40},
    "es": {"estimator": "es"},
    "es-averaged": {"estimator": "es", "gradient_averaging": 0.9, "antithetic": False, "batch_size": 3},
}


def make_opt(dim: int = 3, *, seed: int | None = 0, **options: Any) -> ZeroGrads:
    """A small, fast optimizer starting at ``linspace(-1, 1, dim)``; options override FAST."""
    merged = {**FAST, **options}
    x0 = merged.pop("x0", np.linspace(-1.0, 1.0, dim))
    return ZeroGrads(x0, seed=seed, **merged)


def losses_of(X: npt.ArrayLike) -> list[float]:
    """A staircase loss (zero gradient almost everywhere) with a tilt so batches vary."""
    points = np.atleast_2d(np.asarray(X, dtype=np.float64))
    return [float(np.sum(np.round(2 * x) ** 2) + 0.3 * np.sum(x)) for x in points]


def run_cycles(opt: ZeroGrads, cycles: int) -> FloatArray:
    """``cycles`` full ask/tell rounds; every asked candidate stacked (empty (0, d) for 0)."""
    asked = [np.empty((0, opt.dim))]
    for _ in range(cycles):
        X = opt.ask()
        opt.tell(X, losses_of(X))
        asked.append(X)
    return np.concatenate(asked)


def run_until_split(opt: ZeroGrads, cycles: int, asked: int, told: int) -> FloatArray:
    """Full rounds, then ask ``asked`` rows and tell the first ``told``; returns the untold rows.

    Leaves pending candidates, queued antithetic partners and a partial buffer behind.
    """
    run_cycles(opt, cycles)
    if asked == 0:
        return np.empty((0, opt.dim))
    X = opt.ask(asked)
    if told:
        opt.tell(X[:told], losses_of(X[:told]))
    return X[told:]


def finish_run(opt: ZeroGrads, pending: FloatArray, cycles: int = 2) -> FloatArray:
    """Tell the rows left by :func:`run_until_split`, then ``cycles`` more rounds."""
    if len(pending):
        opt.tell(pending, losses_of(pending))
    return run_cycles(opt, cycles)


def observable_state(opt: ZeroGrads) -> dict[str, Any]:
    """Every public read-out of an optimizer, for equality checks."""
    best = opt.best_x
    return {
        "theta": opt.theta.tolist(),
        "sigma": opt.sigma.tolist(),
        "recommend": opt.recommend().tolist(),
        "best_x": None if best is None else best.tolist(),
        "best_loss": opt.best_loss,
        "iteration": opt.iteration,
        "evaluations": opt.evaluations,
        "n_asked": opt.n_asked,
        "n_failed": opt.n_failed,
        "n_pending": opt.n_pending,
        "surrogate_explained": opt.surrogate_explained,
    }


def assert_same_future(actual: ZeroGrads, expected: ZeroGrads, cycles: int = 2) -> None:
    """Equal read-outs now, and bit-identical candidates and read-outs after ``cycles`` rounds."""
    assert observable_state(actual) == observable_state(expected)
    np.testing.assert_array_equal(run_cycles(actual, cycles), run_cycles(expected, cycles))
    assert observable_state(actual) == observable_state(expected)


def assert_finite_state(opt: ZeroGrads) -> None:
    assert np.all(np.isfinite(opt.theta))
    assert np.all(np.isfinite(opt.sigma)) and np.all(opt.sigma > 0)
    assert np.all(np.isfinite(opt.recommend()))


# Parametrizes a test's ``options`` argument over VARIANTS.
over_variants = pytest.mark.parametrize("options", list(VARIANTS.values()), ids=list(VARIANTS))
