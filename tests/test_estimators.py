"""The gradient estimators on data where the answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

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


def _control_variate(config: ZeroGradsConfig = CONFIG) -> ControlVariateEstimator:
    generator = torch.Generator().manual_seed(0)
    return ControlVariateEstimator(DIM, config, generator, torch.device("cpu"), torch.float64)


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
    assert control_variate.explained > 0.9  # it predicts the fresh differences it removes


def test_control_variate_explains_nothing_of_pure_noise() -> None:
    generator = torch.Generator().manual_seed(5)
    theta = torch.zeros(DIM, dtype=torch.float64)
    estimator = _control_variate()
    for _ in range(100):
        inputs, offsets, sigmas, _ = _batch(generator, theta)
        noise = torch.randn(len(inputs), generator=generator, dtype=torch.float64)
        estimator.fit(inputs, offsets, sigmas, noise)
    assert 0.0 <= estimator.explained < 0.05


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-3, 3), min_size=2, max_size=6), st.integers(0, 2**16))
def test_explained_share_stays_between_zero_and_one(mix: list[float], seed: int) -> None:
    """Targets that mix the learnable slope, its negative and noise in any proportions."""
    generator = torch.Generator().manual_seed(seed)
    theta = torch.zeros(DIM, dtype=torch.float64)
    estimator = _control_variate()
    for weight in mix * 5:
        inputs, offsets, sigmas, linear = _batch(generator, theta)
        noise = torch.randn(len(inputs), generator=generator, dtype=torch.float64)
        estimator.fit(inputs, offsets, sigmas, weight * linear + noise)
        assert 0.0 <= estimator.explained <= 1.0


def test_control_variate_gives_no_weight_to_a_loss_even_around_theta() -> None:
    """A bowl centred on theta: antithetic ES sees exactly zero, and so must the control
    variate, however well its surrogate learned the bowl (it learns only the even part)."""
    generator = torch.Generator().manual_seed(4)
    theta = torch.zeros(DIM, dtype=torch.float64)
    estimator = _control_variate()
    for _ in range(300):
        inputs, offsets, sigmas, _ = _batch(generator, theta)
        bowl = ((offsets**2).sum(1) - DIM) / (2 * DIM) ** 0.5  # centred and scaled as the optimizer does
        estimator.fit(inputs, offsets, sigmas, bowl)
    assert float(torch.linalg.norm(estimator.gradient(theta))) < 1e-12


def test_ensemble_surrogate_is_the_mean_of_members_each_fit_on_its_own() -> None:
    generator = torch.Generator().manual_seed(5)
    theta = torch.zeros(DIM, dtype=torch.float64)
    ensemble, alone = _control_variate(CONFIG.replace(ensemble_size=3)), _control_variate()
    alone.model.members[0].load_state_dict(ensemble.model.members[1].state_dict())
    for _ in range(100):
        batch = _batch(generator, theta)
        ensemble.fit(*batch)
        alone.fit(*batch)
    # member 1 followed the same weights as a surrogate fit alone on the same batches
    for mine, reference in zip(ensemble.model.members[1].parameters(), alone.model.parameters()):
        torch.testing.assert_close(mine, reference, rtol=1e-6, atol=1e-9)
    inputs = _batch(generator, theta)[0]
    members = torch.stack([member(inputs) for member in ensemble.model.members]).detach()
    torch.testing.assert_close(ensemble.model(inputs).detach(), members.mean(0), rtol=0, atol=1e-12)
    assert not torch.equal(members[0], members[1])


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


def test_first_loss_scale_is_adam_on_the_raw_es_gradient() -> None:
    from zg_asktell import ZeroGrads

    opt = ZeroGrads(
        np.zeros(5),
        1.0,
        seed=0,
        estimator="es",
        loss_scale="first",
        lr=0.1,
        dtype="float64",
        control="schedule",
    )
    m = v = np.zeros(5)
    theta, first_spread = np.zeros(5), None
    for step in range(1, 6):
        X = opt.ask()
        losses = np.abs(X - 3.0).sum(axis=1) * 10.0**-step  # the spread shrinks 10x per batch
        opt.tell(X, losses)
        first_spread = first_spread or float(losses.std())
        centred = (losses - losses.mean()) / first_spread
        gradient = centred @ (X - theta) / len(X)
        m = 0.9 * m + 0.1 * gradient
        v = 0.999 * v + 0.001 * gradient**2
        theta = theta - 0.1 * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
        np.testing.assert_allclose(opt.theta, theta, rtol=0, atol=1e-9)


@pytest.mark.parametrize(
    ("dim", "options", "width"),
    [
        (9_999, {}, 64),
        (10_000, {}, 16),
        (10_000, {"hidden_width": 64}, 64),
        (10_000, {"preset": "reference"}, 64),
    ],
)
def test_surrogate_width_follows_the_dimension_unless_set(
    dim: int, options: dict[str, object], width: int
) -> None:
    from zg_asktell import ZeroGrads, preset

    config = preset(str(options.pop("preset", "default")), **options)
    weights = ZeroGrads(np.zeros(dim), config=config, seed=0).state_dict()["estimator"]["model"][
        "members.0.layers.0.weight"
    ]
    assert tuple(weights.shape) == (width, dim * (1 + 2 * config.encoding_frequencies))


def _first_step(dim: int, budget: int | None) -> float:
    from zg_asktell import ZeroGrads

    opt = ZeroGrads(
        np.zeros(dim), 1.0, budget=budget, seed=0, estimator="es", dtype="float64", control="schedule"
    )
    X = opt.ask()
    opt.tell(X, X.sum(axis=1))  # a linear loss: Adam's first step is lr in every coordinate
    return float(np.median(np.abs(opt.theta)))


@pytest.mark.parametrize("budget", [None, 3000])
def test_schedule_step_shrinks_as_one_over_sqrt_dimension_beyond_3072(budget: int | None) -> None:
    sigma_factor = 1.0 if budget is None else 0.2 ** (16 / budget)  # sigma after the first batch
    horizon = 0.1 if budget is None else 2.5 / np.sqrt(budget / 16)
    assert _first_step(1000, budget) == pytest.approx(horizon * sigma_factor, rel=1e-6)
    assert _first_step(3072, budget) == pytest.approx(horizon * sigma_factor, rel=1e-6)
    assert _first_step(4 * 3072, budget) == pytest.approx(horizon * sigma_factor / 2, rel=1e-6)


def test_positional_encoding_gradient_matches_finite_differences() -> None:
    from zg_asktell._estimators import positional_encoding

    z = torch.linspace(-2.0, 2.0, 6, dtype=torch.float64).reshape(2, 3).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: positional_encoding(z, 3), (z,))


@pytest.mark.parametrize(("name", "has_share"), [("default", True), ("es", False), ("surrogate", False)])
def test_optimizer_reports_the_share_only_for_the_control_variate(name: str, has_share: bool) -> None:
    from zg_asktell import ZeroGrads, preset

    opt = ZeroGrads(np.ones(4), config=preset(name), seed=0)
    for _ in range(5):
        X = opt.ask()
        opt.tell(X, [float(np.sum(x**2)) for x in X])
    share = opt.surrogate_explained
    assert (share is not None) == has_share
    assert share is None or 0.0 <= share <= 1.0
