"""The Nevergrad backend: registry, parametrizations, ask/tell patterns, state."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import nevergrad as ng
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from zg_asktell.adapters.nevergrad import VARIANTS, ParametrizedZeroGrads, ZeroGrads

import zg_asktell

REGISTRY = ng.optimizers.registry
DOCS = Path(__file__).resolve().parents[1] / "docs" / "nevergrad.md"


@pytest.fixture(autouse=True)
def _seeded() -> None:
    np.random.seed(0)  # noqa: NPY002  (parametrizations seed their random state from it)


def sphere(x: np.ndarray) -> float:
    return float(np.sum((np.asarray(x) - 0.5) ** 2))


def run(optimizer: Any, loss: Callable[[Any], float], steps: int) -> list[Any]:
    """Ask/tell ``steps`` times; return the told candidates (their loss set)."""
    told = []
    for _ in range(steps):
        candidate = optimizer.ask()
        optimizer.tell(candidate, loss(candidate.value))
        told.append(candidate)
    return told


# ---------------------------------------------------------------------------- registry
def test_registered_names() -> None:
    assert REGISTRY["ZeroGrads"] is ZeroGrads
    for name, preset in VARIANTS.items():
        family = REGISTRY[name]
        assert isinstance(family, ParametrizedZeroGrads)
        optimizer = family(parametrization=3)
        assert isinstance(optimizer, ZeroGrads)
        assert optimizer.name == name
        # no budget: unchanged, but for the best-candidate recommendation Nevergrad users expect
        assert optimizer.core.config == zg_asktell.preset(preset, recommendation="best")


def test_every_preset_has_a_name() -> None:
    assert set(VARIANTS.values()) | {"default"} == set(zg_asktell.PRESETS)


def test_issue_example() -> None:
    def black_box(x: np.ndarray) -> float:
        return float(np.sum(np.round(x - 1.3) ** 2))

    optimizer = REGISTRY["ZeroGrads"](parametrization=ng.p.Array(shape=(500,)), budget=320, num_workers=16)
    with pytest.warns(ng.errors.InefficientSettingsWarning):  # sequential run, 16 workers
        recommendation = optimizer.minimize(black_box)
    assert recommendation.value.shape == (500,)
    assert optimizer.num_tell == 320
    assert optimizer.core.config.batch_size == 16
    assert optimizer.core.iteration == 20
    assert recommendation.loss == black_box(recommendation.value)  # an evaluated point


def test_family_configures_the_core() -> None:
    family = ParametrizedZeroGrads(preset="es", sigma=2.0, options={"gradient_averaging": 0.5})
    assert (
        repr(family) == "ParametrizedZeroGrads(options={'gradient_averaging': 0.5}, preset='es', sigma=2.0)"
    )
    assert ParametrizedZeroGrads(preset="es") == REGISTRY["ZeroGradsES"]
    core = family(parametrization=4).core
    assert core.config == zg_asktell.preset("es", gradient_averaging=0.5, recommendation="best")
    np.testing.assert_array_equal(core.sigma, np.full(4, 2.0))


@pytest.mark.parametrize(
    "budget, workers, options, batch",
    [
        (None, 1, {}, 16),  # the preset's batch
        (None, 25, {}, 26),  # a batch holds all workers, even for antithetic pairs
        (20_000, 16, {}, 16),  # large budget: unchanged
        (100, 1, {}, 4),  # small budget: 25 updates
        (100, 20, {}, 20),
        (100, 30, {"batch_size": 6, "lr": 0.05}, 6),  # explicit options win
        (None, 25, {"antithetic": False}, 25),
    ],
)
def test_batch_fits_budget_and_workers(
    budget: int | None, workers: int, options: dict[str, Any], batch: int
) -> None:
    config = ZeroGrads(2, budget, workers, options=options).core.config
    assert (config.batch_size, config.lr) == (batch, options.get("lr"))  # the core scales the step


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"preset": "nope"}, ValueError),
        ({"options": {"nope": 1}}, ValueError),
        ({"options": [("lr", 1)]}, TypeError),
        ({"options": {"lr": -1.0}}, ValueError),
        ({"sigma": 0.0}, ValueError),
        ({"sigma": math.inf}, ValueError),
        ({"budget": 0}, ValueError),
        ({"budget": 2.5}, ValueError),
        ({"num_workers": 0}, ValueError),
    ],
)
def test_invalid_arguments_raise(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        ZeroGrads(**{"parametrization": 2, **kwargs})
    family_kwargs = {k: v for k, v in kwargs.items() if k in ("preset", "sigma", "options")}
    if family_kwargs:  # the family checks when it is configured
        with pytest.raises(error):
            ParametrizedZeroGrads(**family_kwargs)


def test_other_nevergrad_entry_points_take_the_names() -> None:
    portfolio = ng.optimizers.ConfPortfolio(optimizers=["ZeroGrads", "ZeroGradsES"])(2, budget=40)
    chain = ng.optimizers.Chaining([REGISTRY["ZeroGradsES"], ZeroGrads], [20])(2, budget=40)
    for optimizer in (portfolio, chain):
        recommendation = optimizer.minimize(sphere)
        assert optimizer.num_tell == 40
        assert sphere(recommendation.value) < sphere(np.zeros(2))


def test_importing_twice_and_name_collisions(tmp_path: Path) -> None:
    script = """
        import importlib, sys
        import nevergrad as ng
        import zg_asktell.adapters.nevergrad as zng
        first = ng.optimizers.registry["ZeroGrads"]
        importlib.reload(zng)
        print(ng.optimizers.registry["ZeroGrads"] is zng.ZeroGrads is not first, "adapters" in sys.modules)
        ng.optimizers.registry.unregister("ZeroGradsES")
        ng.optimizers.registry.register_name("ZeroGradsES", ng.optimizers.registry["CMA"])
        try:
            importlib.reload(zng)
        except RuntimeError as error:
            print(error)
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    replaced, collision = result.stdout.splitlines()
    assert replaced == "True False"
    assert "'ZeroGradsES' is already taken" in collision


def test_docs_name_every_optimizer() -> None:
    text = DOCS.read_text()
    for name in ["ZeroGrads", "ParametrizedZeroGrads", *VARIANTS]:
        assert f"`{name}`" in text or f'"{name}"' in text, name


# -------------------------------------------------------------------- parametrizations
def _instrumented(value: Any) -> float:
    (x,), kwargs = value
    return sphere(x) + float((kwargs["y"] - 2) ** 2) + float(kwargs["mode"] != "b")


PARAMETRIZATIONS: dict[str, tuple[Callable[[], Any], Callable[[Any], float], Callable[[Any], bool]]] = {
    "array": (lambda: ng.p.Array(shape=(3,)), sphere, lambda v: v.shape == (3,)),
    "bounded-array": (
        lambda: ng.p.Array(shape=(3,), lower=-1.0, upper=0.2),
        sphere,
        lambda v: bool(np.all((v >= -1.0) & (v <= 0.2))),
    ),
    "arctan-bounds": (
        lambda: ng.p.Array(shape=(2,)).set_bounds(-1.0, 1.0, method="arctan"),
        lambda v: sphere(v - 0.4),
        lambda v: bool(np.all(np.abs(v) <= 1.0)),
    ),
    "scalar": (lambda: ng.p.Scalar(lower=0.0, upper=10.0), lambda v: (v - 7.0) ** 2, lambda v: 0 <= v <= 10),
    "optimum-on-bound": (  # candidates get folded back into the bounds
        lambda: ng.p.Scalar(lower=0.0, upper=1.0),
        lambda v: (v - 1.1) ** 2,
        lambda v: 0 <= v <= 1,
    ),
    "log": (
        lambda: ng.p.Log(lower=1e-3, upper=1e2),
        lambda v: (math.log10(v) - 1.0) ** 2,
        lambda v: 1e-3 <= v <= 1e2,
    ),
    "integer": (
        lambda: ng.p.Scalar(lower=0, upper=20).set_integer_casting(),
        lambda v: (v - 13) ** 2,
        lambda v: isinstance(v, int) and 0 <= v <= 20,
    ),
    "choice": (
        lambda: ng.p.Choice(["a", "b", "c", "d"]),
        lambda v: float(v != "c"),
        lambda v: v in "abcd",
    ),
    "transition-choice": (
        lambda: ng.p.TransitionChoice(list(range(10))),
        lambda v: abs(v - 7),
        lambda v: v in range(10),
    ),
    "dict": (
        lambda: ng.p.Dict(
            lr=ng.p.Log(lower=1e-4, upper=1.0),
            layers=ng.p.Scalar(lower=1, upper=8).set_integer_casting(),
            act=ng.p.Choice(["relu", "tanh"]),
        ),
        lambda v: (math.log10(v["lr"]) + 2) ** 2 + (v["layers"] - 6) ** 2 + (v["act"] == "relu"),
        lambda v: 1e-4 <= v["lr"] <= 1 and 1 <= v["layers"] <= 8 and v["act"] in ("relu", "tanh"),
    ),
    "instrumentation": (
        lambda: ng.p.Instrumentation(ng.p.Array(shape=(2,)), y=ng.p.Scalar(), mode=ng.p.Choice("abc")),
        _instrumented,
        lambda v: len(v[0]) == 1 and set(v[1]) == {"y", "mode"},
    ),
}


@pytest.mark.parametrize("name", sorted(PARAMETRIZATIONS))
def test_parametrizations(name: str) -> None:
    make, loss, valid = PARAMETRIZATIONS[name]
    parametrization = make()
    initial_loss = loss(parametrization.value)
    optimizer = ZeroGrads(parametrization, budget=120)
    told = run(optimizer, loss, 120)
    assert all(valid(candidate.value) for candidate in told)
    assert optimizer.core.n_pending == 0  # every tell matched its ask, folded or sampled
    recommendation = optimizer.provide_recommendation()
    assert recommendation.loss == min(candidate.loss for candidate in told)
    assert valid(recommendation.value)
    assert loss(recommendation.value) == recommendation.loss  # the evaluated value itself
    assert recommendation.loss < initial_loss or recommendation.loss == 0.0  # (random initial choice)


# ------------------------------------------------------------------ ask/tell patterns
@settings(max_examples=25, deadline=None)
@given(
    dim=st.integers(1, 4),
    workers=st.integers(1, 6),
    rounds=st.lists(
        st.tuples(st.randoms(use_true_random=False), st.floats(0.0, 1.0), st.booleans()),
        min_size=1,
        max_size=12,
    ),
)
def test_any_order_partial_and_foreign_tells(
    dim: int, workers: int, rounds: list[tuple[Any, float, bool]]
) -> None:
    """Asks by the worker-load; tells shuffled, some never (failed trials), some unasked."""
    optimizer = ZeroGrads(ng.p.Array(shape=(dim,), lower=-2.0, upper=3.0), budget=200, num_workers=workers)
    told = []
    asked = told_asked = 0
    for rng, keep, foreign in rounds:
        candidates = [optimizer.ask() for _ in range(workers)]
        asked += workers
        assert all(np.all((c.value >= -2.0) & (c.value <= 3.0)) for c in candidates)
        rng.shuffle(candidates)
        candidates = candidates[: round(keep * workers)]
        told_asked += len(candidates)
        if foreign:
            candidates.append(
                optimizer.parametrization.spawn_child(new_value=np.full(dim, rng.uniform(-2, 3)))
            )
        for candidate in candidates:
            optimizer.tell(candidate, sphere(candidate.value))
            told.append(candidate)
    core = optimizer.core
    assert core.evaluations == optimizer.num_tell == len(told)
    assert core.n_asked == asked
    assert core.n_pending == asked - told_asked  # each tell matched its own ask
    assert core.iteration == len(told) // core.config.batch_size  # never waits for a full batch
    if told:
        assert optimizer.provide_recommendation().loss == min(c.loss for c in told)


def test_suggest_and_unasked_points_are_data() -> None:
    optimizer = ZeroGrads(ng.p.Array(shape=(2,)), budget=50)
    optimizer.suggest(np.array([0.5, 0.5]))
    suggested = optimizer.ask()
    optimizer.tell(suggested, sphere(suggested.value))
    unasked = optimizer.parametrization.spawn_child(new_value=np.array([0.4, 0.7]))
    optimizer.tell(unasked, sphere(unasked.value))
    run(optimizer, sphere, 10)
    assert optimizer.num_tell_not_asked == 2
    assert (optimizer.core.evaluations, optimizer.core.n_asked) == (12, 10)
    np.testing.assert_array_equal(optimizer.provide_recommendation().value, [0.5, 0.5])


@pytest.mark.filterwarnings("ignore:Clipping very high value")
@pytest.mark.parametrize("failure", [math.nan, math.inf, 1e300, None])
def test_failed_losses_reach_the_core_as_failures(failure: float | None) -> None:
    def losses(failed: float | None) -> tuple[np.ndarray, int]:
        parametrization = ng.p.Array(shape=(3,))
        parametrization.random_state.seed(4)
        optimizer = ZeroGrads(parametrization, budget=400)  # batch 16: one update
        for k in range(16):
            candidate = optimizer.ask()
            if k % 3 == 0 and failed is not None:
                optimizer.tell(candidate, failed)
            elif k % 3:
                optimizer.tell(candidate, sphere(candidate.value))
            # failed is None: a candidate never told instead
        return optimizer.core.theta, optimizer.core.n_failed

    baseline, _ = losses(math.nan)
    theta, failed = losses(failure)
    if failure is None:  # fewer tells: no update yet
        assert failed == 0
        assert not np.array_equal(theta, baseline)
    else:  # Nevergrad's 5e20 clipping is undone: every kind of failure acts the same
        assert failed == 6
        np.testing.assert_array_equal(theta, baseline)
    finite, _ = losses(1e3)
    assert not np.array_equal(finite, baseline)


def test_cheap_constraints_discard_asks_without_stalling() -> None:
    def constraint(x: np.ndarray) -> bool:
        return bool(x[0] > 0.3)

    parametrization = ng.p.Array(shape=(2,))
    parametrization.register_cheap_constraint(constraint)
    optimizer = ZeroGrads(parametrization, budget=64)
    told = run(optimizer, sphere, 64)
    assert all(candidate.value[0] > 0.3 for candidate in told)
    core = optimizer.core
    discarded = core.n_asked - 64
    assert discarded > 0
    assert core.n_failed == discarded  # told to the core as failures
    assert (core.evaluations, core.n_pending) == (core.n_asked, 0)  # nothing left waiting
    assert optimizer.provide_recommendation().loss < 0.05


# ------------------------------------------------------------- recommendation, state
def test_mean_recommendation_is_theta() -> None:
    family = ParametrizedZeroGrads(preset="reference", options={"recommendation": "mean"})
    optimizer = family(ng.p.Array(shape=(3,), lower=-5.0, upper=5.0), budget=80)
    assert np.array_equal(optimizer.provide_recommendation().value, np.zeros(3))  # before any ask
    told = run(optimizer, sphere, 40)
    recommended = optimizer.provide_recommendation().value
    expected = optimizer.parametrization.spawn_child().set_standardized_data(optimizer.core.theta).value
    np.testing.assert_array_equal(recommended, expected)
    assert not any(np.array_equal(recommended, candidate.value) for candidate in told)


def _seeded_run(seed: int) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Standardized data and choices told, and the recommendation, of a seeded run."""
    parametrization = ng.p.Instrumentation(ng.p.Array(shape=(3,)), y=ng.p.Scalar(), mode=ng.p.Choice("abc"))
    optimizer = ZeroGrads(parametrization, budget=60)
    optimizer.parametrization.random_state.seed(seed)
    told = run(optimizer, _instrumented, 60)
    data = np.stack([c.get_standardized_data(reference=optimizer.parametrization) for c in told])
    recommendation = optimizer.provide_recommendation()
    modes = [c.kwargs["mode"] for c in [*told, recommendation]]
    return data, modes, recommendation.get_standardized_data(reference=optimizer.parametrization)


def test_seeding_the_parametrization_reproduces_runs() -> None:
    data, modes, recommendation = _seeded_run(5)
    np.random.seed(123)  # noqa: NPY002  (the global state plays no part)
    again = _seeded_run(5)
    np.testing.assert_array_equal(again[0], data)
    assert again[1] == modes
    np.testing.assert_array_equal(again[2], recommendation)
    assert not np.array_equal(_seeded_run(6)[0], data)


@pytest.mark.parametrize("name", ["ZeroGrads", "ZeroGradsES"])
def test_dump_load_resumes_exactly(tmp_path: Path, name: str) -> None:
    optimizer = REGISTRY[name](ng.p.Array(shape=(3,)), budget=100)
    run(optimizer, sphere, 37)
    pending = [optimizer.ask() for _ in range(3)]
    optimizer.dump(tmp_path / "opt.pkl")
    loaded = REGISTRY[name].load(tmp_path / "opt.pkl")
    assert isinstance(loaded, ZeroGrads) and loaded.name == name
    for resumed in (optimizer, loaded):
        for candidate in pending:
            resumed.tell(candidate, sphere(candidate.value))
    original, copy = run(optimizer, sphere, 30), run(loaded, sphere, 30)
    np.testing.assert_array_equal([c.value for c in original], [c.value for c in copy])
    np.testing.assert_array_equal(optimizer.core.theta, loaded.core.theta)


def test_minimize_with_a_process_pool() -> None:
    optimizer = ZeroGrads(ng.p.Array(shape=(2,)), budget=24, num_workers=2)
    with ProcessPoolExecutor(max_workers=2) as executor:
        recommendation = optimizer.minimize(sphere, executor=executor, batch_mode=False)
    assert optimizer.num_tell == 24
    assert recommendation.loss == sphere(recommendation.value)


@pytest.mark.filterwarnings("ignore:Clipping very high value")
@pytest.mark.parametrize("bad", [-math.inf, np.float64(-math.inf), np.array(-math.inf)])
def test_minus_inf_is_a_failure_and_never_the_recommendation(bad: Any) -> None:
    parametrization = ng.p.Array(shape=(2,))
    parametrization.random_state.seed(0)
    optimizer = ZeroGrads(parametrization, budget=32)
    first = optimizer.ask()
    optimizer.tell(first, bad)
    for _ in range(15):
        candidate = optimizer.ask()
        optimizer.tell(candidate, sphere(candidate.value))
    recommendation = optimizer.provide_recommendation()
    assert optimizer.core.n_failed == 1
    assert recommendation.loss == sphere(recommendation.value) > -math.inf
    assert not np.array_equal(recommendation.value, first.value)
