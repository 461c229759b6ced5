"""Properties of ask/tell that hold for any dimension, batch, seed and telling order."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from conftest import (
    ESTIMATORS,
    FloatArray,
    assert_finite_state,
    assert_same_future,
    losses_of,
    make_opt,
    observable_state,
    over_variants,
    run_cycles,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from zg_asktell import ZeroGrads

seeds = st.integers(0, 2**31 - 1)


def _cuts(size: int) -> st.SearchStrategy[list[int]]:
    """Sorted cut positions splitting ``size`` rows into consecutive parts."""
    return st.lists(st.integers(1, size - 1), max_size=size - 1, unique=True).map(sorted)


def _parts(rows: int, cuts: list[int]) -> list[slice]:
    edges = [0, *cuts, rows]
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]


# ----------------------------------------------------------------------------- shapes
@given(
    dim=st.integers(1, 6),
    sizes=st.lists(st.integers(1, 20), min_size=1, max_size=3),
    batch_size=st.integers(1, 8),
    antithetic=st.booleans(),
    log_sigma=st.floats(-3, 3),
    center=st.floats(-1e3, 1e3),
)
@settings(max_examples=30)
def test_ask_shapes_and_finiteness(
    dim: int, sizes: list[int], batch_size: int, antithetic: bool, log_sigma: float, center: float
) -> None:
    antithetic = antithetic and batch_size % 2 == 0
    opt = make_opt(
        dim, x0=np.full(dim, center), sigma=10.0**log_sigma, batch_size=batch_size, antithetic=antithetic
    )
    for count, n in enumerate(sizes, start=1):
        X = opt.ask(n)
        assert X.shape == (n, dim) and X.dtype == np.float64
        assert np.all(np.isfinite(X))
        assert opt.n_asked == opt.n_pending == sum(sizes[:count])
    assert opt.ask().shape == (batch_size, dim)
    assert (opt.evaluations, opt.iteration) == (0, 0)


# ----------------------------------------------------------------------------- bounds
@st.composite
def boxes(draw: st.DrawFn) -> dict[str, Any]:
    """Random box bounds (possibly open on one side) and an x0 inside, often on a face."""
    dim = draw(st.integers(1, 4))
    lower = np.array(draw(st.lists(st.floats(-100, 100), min_size=dim, max_size=dim)))
    width = np.array(draw(st.lists(st.floats(1e-3, 50), min_size=dim, max_size=dim)))
    upper = lower + width
    where = draw(
        st.lists(st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0, 1)), min_size=dim, max_size=dim)
    )
    x0 = np.clip(lower + np.array(where) * width, lower, upper)
    open_side = draw(st.sampled_from(["none", "lower", "upper"]))
    if open_side == "lower":
        lower = np.full(dim, -math.inf)
    elif open_side == "upper":
        upper = np.full(dim, math.inf)
    return {"x0": x0, "lower": lower, "upper": upper}


@given(
    box=boxes(),
    sigma_scale=st.sampled_from([None, 0.5, 10.0]),
    jitter=st.sampled_from([0.0, 0.5]),
    estimator=st.sampled_from(ESTIMATORS),
    recommendation=st.sampled_from(["auto", "best", "mean"]),
    push=st.sampled_from([-1.0, 1.0]),
    seed=seeds,
)
@settings(max_examples=25)
def test_bounds_hold_for_candidates_theta_and_recommendation(
    box: dict[str, Any],
    sigma_scale: float | None,
    jitter: float,
    estimator: str,
    recommendation: str,
    push: float,
    seed: int,
) -> None:
    lower, upper = box["lower"], box["upper"]
    dim = box["x0"].size
    sigma = (
        None
        if sigma_scale is None
        else sigma_scale * np.where(np.isfinite(upper - lower), upper - lower, 1.0)
    )
    opt = make_opt(
        dim,
        seed=seed,
        sigma=sigma,
        jitter=jitter,
        estimator=estimator,
        recommendation=recommendation,
        lr=2.0,
        **box,
    )

    def inside(x: FloatArray) -> bool:
        return bool(np.all(x >= lower) and np.all(x <= upper))

    for _ in range(3):
        X = opt.ask()
        assert all(inside(x) for x in X)
        opt.tell(X, [push * float(np.sum(np.round(x, 1))) for x in X])  # a slope towards a face
        assert inside(opt.theta) and inside(opt.recommend())
    assert opt.iteration == 3 and opt.best_x is not None and inside(opt.best_x)


@given(
    budget=st.integers(1, 40),
    batch=st.sampled_from([2, 4, 6]),
    estimator=st.sampled_from(ESTIMATORS),
    jitter=st.sampled_from([0.0, 0.5]),
    one_at_a_time=st.booleans(),
)
@settings(max_examples=30)
def test_last_candidate_of_the_budget_is_theta_and_auto_then_recommends_the_best(
    budget: int, batch: int, estimator: str, jitter: float, one_at_a_time: bool
) -> None:
    opt = make_opt(3, budget=budget, batch_size=batch, estimator=estimator, jitter=jitter)
    while opt.evaluations < budget:
        assert np.array_equal(opt.recommend(), opt.theta)  # "auto" follows theta until the end
        first, theta = opt.n_asked, opt.theta
        X = opt.ask(1 if one_at_a_time else batch)
        is_theta = [bool(np.allclose(x, theta, rtol=0, atol=1e-12)) for x in X]
        assert is_theta == [first + i == budget - 1 for i in range(len(X))]
        opt.tell(X, losses_of(X))
    assert np.array_equal(opt.recommend(), opt.best_x)


# ------------------------------------------------------------------- seeds and RNGs
@over_variants
@given(seed=seeds)
@settings(max_examples=5)
def test_same_seed_same_trajectory(options: dict[str, Any], seed: int) -> None:
    assert_same_future(make_opt(seed=seed, **options), make_opt(seed=seed, **options), cycles=3)


@over_variants
@given(pair=st.lists(seeds, min_size=2, max_size=2, unique=True))
@settings(max_examples=5)
def test_different_seeds_differ(options: dict[str, Any], pair: list[int]) -> None:
    first, second = (make_opt(seed=s, **options) for s in pair)
    assert not np.array_equal(run_cycles(first, 2), run_cycles(second, 2))


def _global_rng_states() -> tuple[Any, torch.Tensor]:
    return np.random.get_state(), torch.get_rng_state()  # noqa: NPY002 (the legacy global RNG)


def _assert_global_rngs_equal(before: tuple[Any, torch.Tensor], after: tuple[Any, torch.Tensor]) -> None:
    (np_before, torch_before), (np_after, torch_after) = before, after
    assert np_before[0] == np_after[0] and np.array_equal(np_before[1], np_after[1])
    assert np_before[2:] == np_after[2:]
    assert torch.equal(torch_before, torch_after)


@over_variants
def test_ask_tell_and_save_leave_global_rngs_alone(options: dict[str, Any], tmp_path: Any) -> None:
    opt = make_opt(**options)
    before = _global_rng_states()
    run_cycles(opt, 2)
    opt.ask(3)
    opt.state_dict()
    opt.save(tmp_path / "state.pt")
    _assert_global_rngs_equal(before, _global_rng_states())


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_construction_and_restore_leave_global_rngs_alone(estimator: str, tmp_path: Any) -> None:
    before = _global_rng_states()
    opt = make_opt(estimator=estimator, seed=None)
    run_cycles(opt, 1)
    opt.save(tmp_path / "state.pt")
    ZeroGrads.load(tmp_path / "state.pt")
    ZeroGrads.from_state_dict(opt.state_dict())
    _assert_global_rngs_equal(before, _global_rng_states())


@over_variants
def test_global_seeds_do_not_change_the_trajectory(options: dict[str, Any]) -> None:
    trajectories = []
    for global_seed in (1, 2):
        np.random.seed(global_seed)  # noqa: NPY002
        torch.manual_seed(global_seed)
        trajectories.append(run_cycles(make_opt(seed=7, **options), 2))
    np.testing.assert_array_equal(*trajectories)


# ------------------------------------------------------------------- copies, no aliasing
def _bounded_run(
    x0: FloatArray, sigma: FloatArray, lower: FloatArray, upper: FloatArray, mutate: bool
) -> ZeroGrads:
    """One update from the given arrays, scribbling over every array handed in or out if ``mutate``."""
    opt = make_opt(x0=x0, sigma=sigma, lower=lower, upper=upper)
    scribble: Callable[[FloatArray], None] = (lambda a: a.fill(1e6)) if mutate else (lambda a: None)
    for array in (x0, sigma, lower, upper):
        scribble(array)
    X = opt.ask()
    losses = np.array(losses_of(X))
    told = X.copy()
    scribble(X)
    opt.tell(told, losses)
    for array in (told, losses, opt.theta, opt.sigma, opt.recommend(), opt.best_x):
        scribble(array)
    return opt


def test_caller_arrays_are_copied_not_mutated() -> None:
    x0, sigma, lower, upper = np.array([0.1, 0.2, 0.3]), np.full(3, 0.5), np.full(3, -1.0), np.full(3, 1.0)
    opt = make_opt(x0=x0, sigma=sigma, lower=lower, upper=upper)
    X = opt.ask()
    losses = np.array(losses_of(X))
    inputs = [x0, sigma, lower, upper, X, losses]
    snapshot = [a.copy() for a in inputs]
    opt.tell(X, losses)
    opt.tell(X[:1] * 0.5, [None])  # a never-asked point (an asked one counts once)
    for array, original in zip(inputs, snapshot, strict=True):
        np.testing.assert_array_equal(array, original)


def test_mutating_inputs_and_outputs_does_not_change_the_optimizer() -> None:
    def arrays() -> tuple[FloatArray, ...]:
        return np.array([0.1, 0.2, 0.3]), np.full(3, 0.5), np.full(3, -1.0), np.full(3, 1.0)

    scribbled = _bounded_run(*arrays(), mutate=True)
    untouched = _bounded_run(*arrays(), mutate=False)
    assert_same_future(scribbled, untouched)


def test_returned_arrays_are_fresh_copies() -> None:
    opt = make_opt(recommendation="mean")
    run_cycles(opt, 1)
    for read in (lambda: opt.theta, lambda: opt.sigma, lambda: opt.recommend(), lambda: opt.best_x):
        first, second = read(), read()
        assert first is not second and not np.shares_memory(first, second)
    first, second = opt.ask(2), opt.ask(2)
    assert not np.shares_memory(first, second)


# ------------------------------------------------------------ telling order and parts
def _twin_after_ask(options: dict[str, Any], seed: int) -> tuple[ZeroGrads, ZeroGrads, FloatArray]:
    """Two identical optimizers after one update, each holding the same freshly asked batch."""
    twins = [make_opt(seed=seed, **options) for _ in range(2)]
    for opt in twins:
        run_cycles(opt, 1)
    batch = twins[0].ask()
    np.testing.assert_array_equal(batch, twins[1].ask())
    return twins[0], twins[1], batch


def _tell_parts(opt: ZeroGrads, X: FloatArray, order: FloatArray | list[int], cuts: list[int]) -> None:
    """Tell rows ``X[order]`` in consecutive parts; the update must wait for the last part."""
    rows = X[np.asarray(order)]
    losses = losses_of(rows)
    start = opt.iteration
    for part in _parts(len(rows), cuts):
        assert opt.iteration == start
        opt.tell(rows[part], losses[part])
    assert opt.iteration == start + 1 and opt.n_pending == 0


@pytest.mark.parametrize("options", [{"batch_size": 8, "estimator": e} for e in ESTIMATORS], ids=ESTIMATORS)
@given(data=st.data(), seed=seeds)
@settings(max_examples=10)
def test_partial_tells_in_order_equal_one_tell(
    options: dict[str, Any], data: st.DataObject, seed: int
) -> None:
    in_parts, at_once, X = _twin_after_ask(options, seed)
    _tell_parts(in_parts, X, list(range(len(X))), data.draw(_cuts(len(X))))
    at_once.tell(X, losses_of(X))
    assert_same_future(in_parts, at_once)


@pytest.mark.parametrize("options", [{"batch_size": 8, "estimator": e} for e in ESTIMATORS], ids=ESTIMATORS)
@given(data=st.data(), seed=seeds)
@settings(max_examples=10)
def test_shuffled_tells_pair_each_loss_with_its_candidate(
    options: dict[str, Any], data: st.DataObject, seed: int
) -> None:
    shuffled, in_order, X = _twin_after_ask(options, seed)
    order = data.draw(st.permutations(range(len(X))))
    _tell_parts(shuffled, X, order, data.draw(_cuts(len(X))))
    in_order.tell(X, losses_of(X))
    state, expected = observable_state(shuffled), observable_state(in_order)
    np.testing.assert_allclose(state.pop("theta"), expected.pop("theta"), rtol=0, atol=1e-6)
    np.testing.assert_allclose(state.pop("recommend"), expected.pop("recommend"), rtol=0, atol=1e-6)
    assert state == expected
    np.testing.assert_allclose(shuffled.ask(), in_order.ask(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_shuffled_tells_give_the_identical_update(estimator: str) -> None:
    for seed in range(8):
        shuffled, in_order, X = _twin_after_ask({"batch_size": 8, "estimator": estimator}, seed)
        _tell_parts(shuffled, X, list(range(len(X)))[::-1], [3])
        in_order.tell(X, losses_of(X))
        assert_same_future(shuffled, in_order)


# ------------------------------------------------------------------ unusual losses
@given(
    points=st.lists(st.lists(st.floats(-5, 5), min_size=3, max_size=3), min_size=1, max_size=6),
    losses=st.lists(st.floats(-10, 10), min_size=6, max_size=6),
    estimator=st.sampled_from(ESTIMATORS),
)
@settings(max_examples=15)
def test_points_never_asked_are_accepted(
    points: list[list[float]], losses: list[float], estimator: str
) -> None:
    opt = make_opt(estimator=estimator)
    asked = opt.ask(3)
    foreign = np.array(points) + 100.0  # far from anything asked
    values = losses[: len(foreign)]
    opt.tell(foreign, values)
    assert (opt.evaluations, opt.n_asked, opt.n_pending) == (len(foreign), 3, 3)
    assert opt.best_loss == min(values)
    np.testing.assert_array_equal(opt.best_x, foreign[int(np.argmin(values))])
    opt.tell(asked, losses_of(asked))
    assert opt.iteration == (len(foreign) + 3) // 4 and opt.n_pending == 0
    assert_finite_state(opt)


def test_es_ignores_points_never_asked() -> None:
    opt = make_opt(estimator="es")
    start = opt.theta
    foreign = np.arange(12.0).reshape(4, 3)
    opt.tell(foreign, [3.0, 1.0, 4.0, 1.5])
    assert opt.iteration == 1
    np.testing.assert_array_equal(opt.theta, start)


def test_rows_told_back_as_float32_find_their_candidates() -> None:
    narrowed, exact = make_opt(), make_opt()
    X = narrowed.ask()
    exact.ask()
    narrowed.tell(X.astype(np.float32), losses_of(X))
    exact.tell(X, losses_of(X))
    assert narrowed.n_pending == 0
    np.testing.assert_allclose(narrowed.theta, exact.theta, rtol=0, atol=1e-6)


BAD_LOSSES = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "none": None}


@given(
    kinds=st.lists(st.sampled_from(["ok", "ok", *BAD_LOSSES]), min_size=12, max_size=12),
    policy=st.sampled_from(["worst", "drop"]),
    estimator=st.sampled_from(ESTIMATORS),
    gradient_averaging=st.sampled_from([0.0, 0.8]),
)
@settings(max_examples=25)
def test_failed_losses_are_counted_and_state_stays_finite(
    kinds: list[str], policy: str, estimator: str, gradient_averaging: float
) -> None:
    opt = make_opt(nonfinite_policy=policy, estimator=estimator, gradient_averaging=gradient_averaging)
    finite: list[float] = []
    for batch in np.array_split(np.array(kinds), 3):
        X = opt.ask()
        good = losses_of(X)
        losses = [good[i] if kind == "ok" else BAD_LOSSES[str(kind)] for i, kind in enumerate(batch)]
        finite += [v for v in losses if v is not None and math.isfinite(v)]
        opt.tell(X, losses)
        assert_finite_state(opt)
        assert np.all(np.isfinite(opt.ask(2)))
    assert opt.n_failed == sum(kind != "ok" for kind in kinds)
    assert opt.evaluations == 12
    assert opt.best_loss == (min(finite) if finite else math.inf)


# ---------------------------------------------------------------- antithetic pairs
@given(
    seed=seeds,
    dim=st.integers(1, 5),
    half_batch=st.integers(1, 4),
    chunks=st.lists(st.integers(1, 3), min_size=1, max_size=8),
)
@settings(max_examples=20)
def test_asking_one_at_a_time_yields_antithetic_pairs(
    seed: int, dim: int, half_batch: int, chunks: list[int]
) -> None:
    batch_size = 2 * half_batch
    one_by_one, chunked = (make_opt(dim, seed=seed, batch_size=batch_size) for _ in range(2))
    run_cycles(one_by_one, 1)
    run_cycles(chunked, 1)
    theta = one_by_one.theta
    X = np.concatenate([one_by_one.ask(1) for _ in range(batch_size)])
    Y = np.concatenate([chunked.ask(n) for n in chunks])
    common = min(len(X), len(Y))
    np.testing.assert_array_equal(Y[:common], X[:common])
    for rows in (X, Y[: len(Y) // 2 * 2]):
        np.testing.assert_allclose(rows[::2] - theta, -(rows[1::2] - theta), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("averaging", [0.0, 0.9])
@pytest.mark.parametrize(("budget", "expected"), [(None, 0.1), (16 * 25, 0.5), (16 * 10**6, 0.02)])
def test_first_step_has_the_horizon_length(averaging: float, budget: int | None, expected: float) -> None:
    """Adam's first step is ``lr`` on every coordinate: ``2.5/sqrt(updates)`` clipped to
    [0.02, 1] (0.1 without a budget), times ``sqrt(1 - rho)``, in units of the current sigma."""
    opt = ZeroGrads(
        np.zeros(6),
        2.0,
        budget=budget,
        seed=0,
        estimator="es",
        control="schedule",
        gradient_averaging=averaging,
    )
    X = opt.ask()
    opt.tell(X, [float(np.sum(np.round(x) + x)) for x in X])
    lr = expected * math.sqrt(1 - averaging)
    np.testing.assert_allclose(np.abs(opt.theta), lr * opt.sigma, rtol=1e-5)


@pytest.mark.parametrize("hold", [0.0, 0.5])
def test_sigma_is_held_then_annealed_to_sigma_final(hold: float) -> None:
    opt = ZeroGrads(
        np.zeros(3),
        2.0,
        budget=64,
        seed=0,
        batch_size=4,
        control="schedule",
        sigma_hold=hold,
        sigma_final=0.25,
    )
    widths = []
    while opt.evaluations < 64:
        X = opt.ask()
        opt.tell(X, losses_of(X))
        widths.append(float(opt.sigma[0]))
    held = [w for w, told in zip(widths, range(4, 65, 4)) if told <= hold * 64]
    assert held == [2.0] * len(held) and len(held) == int(hold * 16)
    assert widths[-1] == pytest.approx(0.5)  # 2.0 * sigma_final at the end of the budget
    assert all(a > b for a, b in zip(widths[len(held) :], widths[len(held) + 1 :]))


@pytest.mark.parametrize(("threads", "expected"), [(1, [1, 3, 1, 3]), (None, [])])
def test_ask_and_tell_use_the_configured_torch_threads_and_restore_them(
    threads: int | None, expected: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    opt = make_opt(threads=threads)
    X = opt.ask()
    opt.tell(X, losses_of(X))
    assert calls == expected  # one thread for sampling, then for the update; 3 again after each
