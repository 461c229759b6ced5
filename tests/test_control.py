"""The step-size and width controller: what it does on losses whose answer is known, exact
resume, and the robust targets that keep penalty losses from ruining a run."""

from __future__ import annotations

import sys
from collections.abc import Callable

import numpy as np
import pytest
import torch

from zg_asktell import ZeroGrads, preset
from zg_asktell._control import Adaptive, Observation, utilities
from zg_asktell._estimators import ESEstimator
from zg_asktell._targets import LossScaler, ties


def _run(opt: ZeroGrads, loss: Callable[[np.ndarray], float], updates: int) -> None:
    for _ in range(updates):
        X = opt.ask()
        opt.tell(X, [loss(x) for x in X])


def test_step_grows_while_steps_keep_paying() -> None:
    opt = ZeroGrads(np.zeros(50), 1.0, seed=0, lr=0.01)
    _run(opt, lambda x: float(np.sum(x)), 40)  # a slope: every step should have been longer
    assert opt.history[-1, 2] > 5 * opt.history[0, 2]


def test_step_shrinks_when_steps_stop_paying() -> None:
    opt = ZeroGrads(np.zeros(50), 1.0, seed=0, lr=2.0)
    _run(opt, lambda x: float(np.sum(x**2)), 40)  # at the minimum: every step overshoots
    assert opt.history[-1, 2] < opt.history[0, 2] / 5


def test_sigma_grows_on_a_plateau_and_stops_once_the_loss_changes() -> None:
    opt = ZeroGrads(np.full(20, 0.3), 0.01, seed=0)
    _run(opt, lambda x: float(np.sum(np.round(x) ** 2)), 60)  # steps 1 wide: sigma 0.01 sees none
    sigmas = opt.history[:, 1]
    assert sigmas[9] == pytest.approx(0.01 * np.exp(0.2 * 10), rel=1e-6)  # every pair tied
    assert 0.1 < sigmas[-1] < 10.0
    assert float(np.sum(np.round(opt.theta) ** 2)) == 0.0


@pytest.mark.parametrize(("budget", "share"), [(None, 1.0), (3_200, 1.0), (32_000, 0.1)])
def test_a_long_planned_run_spreads_the_width_rule_over_its_length(budget: int | None, share: float) -> None:
    opt = ZeroGrads(np.full(20, 0.3), 0.01, seed=0, budget=budget)
    _run(opt, lambda x: float(np.sum(np.round(x) ** 2)), 10)  # every pair tied: a plateau
    # Up to 200 updates of 16 the full growth; a run ten times longer grows ten times slower.
    assert opt.history[9, 1] == pytest.approx(0.01 * np.exp(share * 0.2 * 10), rel=1e-6)


def _along_last_step(gradient: list[float]) -> Observation:
    """An update of 10 variables whose last step and spread are all ones; its losses are all
    zero (no ranking signal) and its ties are given as 0 (no plateau term)."""
    ones = torch.ones(10, dtype=torch.float64)
    zeros = torch.zeros(10, dtype=torch.float64)
    offsets = torch.eye(10, dtype=torch.float64)
    return Observation(offsets, zeros, 0.0, torch.tensor(gradient, dtype=torch.float64), ones, ones)


@pytest.mark.parametrize(("budget", "decay"), [(None, 0.0), (32_000, 0.05 * 0.1 * 0.9)])
def test_a_long_planned_run_anneals_its_step_where_steps_do_not_pay(budget: int | None, decay: float) -> None:
    control = Adaptive(preset("default"), dim=10, budget=budget, max_sigma=10.0)
    start = control.lr(0)
    for _ in range(20):  # a gradient across the last step: no sign the step is too short or too long
        control.observe(_along_last_step([1.0, -1.0] * 5))
    assert control.lr(0) == pytest.approx(start * np.exp(-20 * decay), rel=1e-9)


@pytest.mark.parametrize(("lr", "growth"), [(0.5, 20 * 0.5 * 0.05 * 3), (0.02, 0.0)])
def test_a_step_held_at_its_cap_widens_sigma(lr: float, growth: float) -> None:
    control = Adaptive(preset("default", lr=lr), dim=10, budget=None, max_sigma=100.0)
    for _ in range(20):  # every step paid: the step asks to grow, by 3 noise units
        control.observe(_along_last_step([-1.0] * 10))
    # At the cap (half a sigma) half the refused growth widens sigma; below it the step grows alone.
    assert control.sigma(0) == pytest.approx(np.exp(growth), rel=1e-9)
    assert control.lr(0) / control.sigma(0) == pytest.approx(min(0.5, lr * np.exp(20 * 0.05 * 3)), rel=1e-9)


@pytest.mark.parametrize(("lr", "growth"), [(0.5 / 30, -20 * 0.5 * 0.05 * 3), (0.5, 0.0)])
def test_a_step_held_at_its_floor_narrows_sigma(lr: float, growth: float) -> None:
    control = Adaptive(preset("default", lr=lr), dim=10, budget=None, max_sigma=100.0)
    for _ in range(20):  # every step overshot: the step asks to shrink, by 3 noise units
        control.observe(_along_last_step([1.0] * 10))
    # At the floor (1/30 of the cap) half the refused shrink narrows sigma; above it the step
    # shrinks alone (from the cap it needs 23 such updates to reach the floor).
    assert control.sigma(0) == pytest.approx(np.exp(growth), rel=1e-9)
    assert control.lr(0) / control.sigma(0) == pytest.approx(
        max(0.5 / 30, lr * np.exp(-20 * 0.05 * 3)), rel=1e-9
    )


@pytest.mark.parametrize(
    ("budget", "updates", "cap"),
    [(None, 200, 0.5), (None, 800, 0.25), (3_200, 200, 0.5), (32_000, 200, 0.5 * 0.1**0.75)],
)
def test_a_long_run_caps_its_step_lower(budget: int | None, updates: int, cap: float) -> None:
    control = Adaptive(preset("default"), dim=10, budget=budget, max_sigma=100.0)
    for _ in range(updates):  # every step paid: the step grows until its cap holds it
        control.observe(_along_last_step([-1.0] * 10))
    # Half a sigma; beyond 200 updates (200 / planned) ** 0.75 of that, or sqrt(200 / told so far).
    assert control.lr(0) / control.sigma(0) == pytest.approx(cap, rel=1e-9)


def test_a_falling_cap_does_not_widen_sigma() -> None:
    control = Adaptive(preset("default", lr=0.5), dim=10, budget=None, max_sigma=100.0)
    for _ in range(200):  # the step at its cap asks for a little more: sigma widens
        control.observe(_along_last_step([-0.01] * 10))
    widened = control.sigma(0)
    for _ in range(100):  # then steps that ask for nothing while the cap falls under the step
        control.observe(_along_last_step([1.0, -1.0] * 5))
    assert widened > 1.1 and control.sigma(0) == pytest.approx(widened, rel=1e-12)


def test_the_updates_told_resume_with_the_controller() -> None:
    def run(control: Adaptive, updates: int) -> None:
        for _ in range(updates):
            control.observe(_along_last_step([-1.0] * 10))

    control = Adaptive(preset("default"), dim=10, budget=None, max_sigma=100.0)
    run(control, 400)
    resumed = Adaptive(preset("default"), dim=10, budget=None, max_sigma=100.0)
    resumed.load_state_dict(control.state_dict())
    run(control, 10)
    run(resumed, 10)  # without the count, its cap would be back at half a sigma
    assert resumed.lr(0) == control.lr(0)


def test_sigma_shrinks_when_near_samples_rank_first() -> None:
    opt = ZeroGrads(np.zeros(100), 1.0, seed=0)
    _run(opt, lambda x: float(np.sum(x**2)), 40)  # at the minimum, the nearest samples win
    assert opt.history[-1, 1] < 0.5


def test_the_width_narrows_where_the_loss_is_steep() -> None:
    steep = np.r_[np.full(10, 100.0), np.ones(10)]
    opt = ZeroGrads(np.zeros(20), 1.0, seed=0)
    _run(opt, lambda x: float(np.sum(steep * x**2)), 100)  # at the minimum: curvature sets the widths
    sigma, step = opt.sigma, opt.step_size
    assert np.median(sigma[:10]) < np.median(sigma[10:]) / 2
    np.testing.assert_allclose(step / sigma, step[0] / sigma[0])  # the step follows the width
    assert np.exp(np.mean(np.log(sigma))) == pytest.approx(opt.history[-1, 1], rel=1e-9)


@pytest.mark.parametrize(("budget", "share"), [(None, 1.0), (32_000, np.sqrt(0.1))])
def test_the_shape_moves_with_each_coordinates_ranking(budget: int | None, share: float) -> None:
    control = Adaptive(preset("default"), dim=3, budget=budget, max_sigma=10.0)
    near, far = [0.2, 1.0, 2.0], [1.0, 1.0, 1.0]
    offsets = torch.tensor([near, far], dtype=torch.float64)
    targets = torch.tensor([0.0, 1.0], dtype=torch.float64)  # near in the first coordinate ranks first
    control.observe(Observation(offsets, targets, 0.0, torch.zeros(3), torch.ones(3), None))
    signals = 0.5 * (offsets[0] ** 2 - offsets[1] ** 2) / np.sqrt(2)  # weights +1/2, -1/2
    expected = share * 0.03 * (signals - signals.mean())  # 2,000 updates: noise of a 200-update run
    np.testing.assert_allclose(np.log(control.shape().numpy()), expected.numpy(), rtol=1e-9)
    assert float(control.shape()[0]) < 1.0 < float(control.shape()[2])


def test_the_step_signal_measures_the_last_step_in_units_of_the_shape() -> None:
    control = Adaptive(preset("default"), dim=2, budget=None, max_sigma=10.0)
    control.log_shape = torch.tensor([np.log(2.0), -np.log(2.0)], dtype=torch.float64)
    start = control.lr(0)
    targets = torch.zeros(2, dtype=torch.float64)  # equal losses: no ranking signal, the shape stays
    gradient, spread, last = torch.tensor([-1.0, 0.0]), torch.ones(2), torch.ones(2)
    # ties given as 0: no plateau term, so sigma (and the step's cap) stay put
    control.observe(Observation(torch.eye(2, dtype=torch.float64), targets, 0.0, gradient, spread, last))
    step = np.array([1.0, 1.0]) / [2.0, 0.5]  # the step in units of each coordinate's width
    signal = step[0] / np.sqrt(np.sum(step**2))
    assert np.log(control.lr(0) / start) == pytest.approx(0.05 * signal, rel=1e-9)


def test_a_width_with_a_shape_gives_the_stein_gradient_per_coordinate() -> None:
    rows = torch.tensor([[1.0, 1.0], [-1.0, -1.0]], dtype=torch.float64)
    widths = torch.tensor([[0.5, 2.0], [0.5, 2.0]], dtype=torch.float64)
    estimator = ESEstimator()
    estimator.fit(rows * widths, rows, widths, torch.tensor([1.0, -1.0], dtype=torch.float64))
    # t u / sigma per coordinate: the narrow coordinate's difference means a steeper slope
    np.testing.assert_allclose(estimator.gradient(torch.zeros(2)).numpy(), [2.0, 0.5])


def test_sigma_never_starts_wider_than_a_quarter_of_the_box() -> None:
    opt = ZeroGrads(np.zeros(4), 10.0, lower=-1.0, upper=1.0, seed=0)
    assert np.allclose(opt.sigma, 0.5)
    assert np.allclose(ZeroGrads(np.zeros(4), 10.0, control="schedule", seed=0).sigma, 10.0)


def test_no_coordinate_samples_wider_than_a_quarter_of_its_box() -> None:
    lower, upper = np.array([-0.1, -10.0, -10.0]), np.array([0.1, 10.0, 10.0])
    opt = ZeroGrads(np.zeros(3), 1.0, lower=lower, upper=upper, seed=0)
    np.testing.assert_allclose(opt.sigma, [0.05, 1.0, 1.0])  # the narrow coordinate, capped on its own
    _run(opt, lambda x: float(np.sum(np.abs(x))), 20)
    assert opt.sigma[0] <= 0.05 * (1 + 1e-9)


def test_a_box_open_in_most_coordinates_does_not_cap_sigma() -> None:
    lower, upper = np.array([-0.1, -np.inf, -np.inf]), np.array([0.1, np.inf, np.inf])
    opt = ZeroGrads(np.zeros(3), 1.0, lower=lower, upper=upper, seed=0)
    np.testing.assert_allclose(opt.sigma, [0.05, 1.0, 1.0])


def test_no_budget_runs_do_not_stall_or_diverge() -> None:
    opt = ZeroGrads(np.full(30, 2.0), 0.5, seed=1)  # anytime use: no budget, no schedule
    _run(opt, lambda x: float(np.sum(np.round(4 * x) ** 2)), 300)
    assert float(np.sum(np.round(4 * opt.theta) ** 2)) <= 2.0
    assert np.all(np.isfinite(opt.history))


def test_controller_state_resumes_exactly() -> None:
    def loss(x: np.ndarray) -> float:
        return float(np.sum(np.abs(np.round(3 * x) - 1)))

    opt = ZeroGrads(np.zeros(12), 0.3, seed=4, budget=800)
    _run(opt, loss, 20)
    resumed = ZeroGrads.from_state_dict(opt.state_dict())
    _run(opt, loss, 15)
    _run(resumed, loss, 15)
    np.testing.assert_array_equal(resumed.history, opt.history)
    np.testing.assert_array_equal(resumed.theta, opt.theta)
    np.testing.assert_array_equal(resumed.step_size, opt.step_size)


def test_status_values_are_in_parameter_units() -> None:
    opt = ZeroGrads(np.zeros(3), np.array([1.0, 2.0, 4.0]), seed=0, lr=0.1)
    np.testing.assert_allclose(opt.step_size, [0.1, 0.2, 0.4])
    assert opt.history.shape == (0, 3)


def test_utilities_share_ties_and_sum_to_zero() -> None:
    weights = utilities(torch.tensor([3.0, 1.0, 1.0, 7.0, 9.0, 11.0]))
    assert float(weights.sum()) == pytest.approx(0.0, abs=1e-12)
    assert float(weights[1]) == float(weights[2]) > float(weights[0]) > float(weights[3]) == float(weights[5])
    assert torch.allclose(utilities(torch.full((6,), 2.0)), torch.zeros(6, dtype=torch.float64), atol=1e-15)


@pytest.mark.parametrize(
    ("losses", "share"),
    [
        ([2.0, 2.0, 2.0, 2.0, 2.0], 1.0),
        ([1.0, 1.0, 2.0, 3.0, 4.0], 0.25),
        ([1.0, 1.0, 2.0, 2.0, 3.0], 0.25),  # equal antithetic pairs of an even loss: not flat
        ([1.0, 2.0, 3.0], 0.0),
        ([5.0], 0.0),
    ],
)
def test_ties_measure_how_flat_the_batch_is(losses: list[float], share: float) -> None:
    assert ties(np.array(losses)) == share


@pytest.mark.parametrize("penalty", [1e3, 1e10, 1e160, 1e300, sys.float_info.max, -1e308])
def test_one_penalty_loss_does_not_ruin_the_run(penalty: float) -> None:
    def bowl(x: np.ndarray) -> float:
        return float(np.sum(np.round(4 * x) ** 2))

    for seed in range(2):
        opt = ZeroGrads(np.full(20, 1.0), 0.2, budget=2000, seed=seed)
        while opt.evaluations < opt.budget:  # type: ignore[operator]
            X = opt.ask()
            losses = [bowl(x) for x in X]
            if opt.evaluations == 32:
                losses[5] = penalty  # an invalid configuration among the first 64 evaluations
            opt.tell(X, losses)
        assert bowl(opt.theta) == 0.0
        assert opt.best_loss == min(penalty, 0.0)  # what was told is kept as told


def test_penalties_are_clipped_and_do_not_set_the_running_spread() -> None:
    scaler = LossScaler("running")
    ordinary = np.array([1.0, 2.0, 3.0, 4.0])
    scaler.targets(ordinary)
    spread = scaler.scale
    targets = scaler.targets(np.array([1.0, 2.0, 3.0, 1e308]))
    assert np.all(np.isfinite(targets)) and targets.max() <= 5.0 + 1.0
    scaler.targets(ordinary)
    assert scaler.scale == spread
    first = LossScaler("running").targets(np.array([2.0, 2.0, 2.0, 2.1, 1.9, 1e10]))
    assert np.argmax(first) == 5 and first.max() < 6.0  # a first batch's outlier is clipped too


def test_presets_whose_gradient_carries_memory_run_open_loop() -> None:
    # The adaptive step reads a fresh estimate per update against the last step, in units of such
    # estimates' spread; a warm-started surrogate's gradient is not fresh, and averaging shrinks
    # Adam's spread below a fresh estimate's (docs/benchmarks.md: 1.2x-700x behind es).
    from zg_asktell import PRESETS

    with_memory = [n for n, c in PRESETS.items() if c.estimator == "surrogate" or c.gradient_averaging > 0]
    assert {"surrogate", "es-averaged", "reference"} <= set(with_memory)
    assert {n: PRESETS[n].control for n in with_memory} == {n: "schedule" for n in with_memory}
