"""The gradient estimators on data where the answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zg_asktell import ZeroGradsConfig
from zg_asktell._estimators import ControlVariateEstimator, ESEstimator

DIM = 20
CONFIG = ZeroGradsConfig(hidden_width=32, encoding_frequencies=1)
SLOPE = torch.linspace(-1.0, 1.0, DIM, dtype=torch.float64)


def _batch(generator: torch.Generator, theta: torch.Tensor, pairs: int = 8) -> tuple[torch.Tensor, ...]:
    """Antithetic samples around ``theta`` (sigma 1) of the linear loss ``SLOPE . z``."""
    noise = torch.randn((pairs, DIM), generator=generator, dtype=torch.float64)
    offsets = torch.stack([noise, -noise], dim=1).reshape(-1, DIM)
    inputs = theta + offsets
    return inputs, offsets, torch.ones(len(inputs), dtype=torch.float64), inputs @ SLOPE


def _control_variate() -> ControlVariateEstimator:
    generator = torch.Generator().manual_seed(0)
    return ControlVariateEstimator(DIM, CONFIG, generator, torch.device("cpu"), torch.float64)


def test_control_variate_is_plain_es_until_the_surrogate_predicts() -> None:
    generator = torch.Generator().manual_seed(1)
    batch = _batch(generator, torch.zeros(DIM, dtype=torch.float64))
    es, control_variate = ESEstimator(), _control_variate()
    es.fit(*batch)
    control_variate.fit(*batch)  # the zero-initialised surrogate predicts nothing yet
    theta = torch.zeros(DIM, dtype=torch.float64)
    assert torch.equal(control_variate.gradient(theta), es.gradient(theta))


def test_control_variate_beats_es_once_the_surrogate_has_learned_the_loss() -> None:
    generator = torch.Generator().manual_seed(2)
    theta = torch.zeros(DIM, dtype=torch.float64)
    es, control_variate = ESEstimator(), _control_variate()
    for _ in range(300):
        control_variate.fit(*_batch(generator, theta))
    errors = {"es": [], "control-variate": []}
    for _ in range(20):
        batch = _batch(generator, theta)
        es.fit(*batch)
        control_variate.fit(*batch)
        errors["es"].append(float(torch.linalg.norm(es.gradient(theta) - SLOPE)))
        errors["control-variate"].append(float(torch.linalg.norm(control_variate.gradient(theta) - SLOPE)))
    assert np.mean(errors["control-variate"]) < 0.2 * np.mean(errors["es"])


@pytest.mark.parametrize("rows", [[0, 1], []])
def test_control_variate_ignores_points_it_never_asked(rows: list[int]) -> None:
    generator = torch.Generator().manual_seed(3)
    inputs, offsets, sigmas, targets = _batch(generator, torch.zeros(DIM, dtype=torch.float64), pairs=2)
    foreign = torch.full_like(offsets, float("nan"))
    foreign[rows] = offsets[rows]
    estimator = _control_variate()
    estimator.fit(inputs, foreign, sigmas, targets)
    gradient = estimator.gradient(torch.zeros(DIM, dtype=torch.float64))
    assert bool(torch.isfinite(gradient).all())
    assert bool((gradient != 0).any()) == bool(rows)
