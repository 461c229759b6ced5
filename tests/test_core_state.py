"""Saving and resuming: a restored optimizer continues exactly like an uninterrupted one."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import (
    VARIANTS,
    assert_same_future,
    finish_run,
    losses_of,
    make_opt,
    observable_state,
    over_variants,
    run_cycles,
    run_until_split,
)
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from zg_asktell import PRESETS, ZeroGrads, ZeroGradsConfig
from zg_asktell._optimizer import STATE_FORMAT

Restore = Callable[[ZeroGrads, Path], ZeroGrads]


def _via_from_state_dict(opt: ZeroGrads, path: Path) -> ZeroGrads:
    return ZeroGrads.from_state_dict(opt.state_dict())


def _via_load_state_dict(opt: ZeroGrads, path: Path) -> ZeroGrads:
    other = make_opt(opt.dim, seed=12345, lr=0.5)  # another config and seed, all replaced
    other.load_state_dict(opt.state_dict())
    return other


def _via_file(opt: ZeroGrads, path: Path) -> ZeroGrads:
    opt.save(path)
    return ZeroGrads.load(path)


RESTORES: dict[str, Restore] = {
    "from_state_dict": _via_from_state_dict,
    "load_state_dict": _via_load_state_dict,
    "save-load": _via_file,
}


def assert_nested_equal(actual: Any, expected: Any, where: str = "state") -> None:
    """Exact equality of nested dicts/lists of tensors and plain values (NaN equals NaN)."""
    assert type(actual) is type(expected), where
    if isinstance(expected, dict):
        assert list(actual) == list(expected), where
        for key in expected:
            assert_nested_equal(actual[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), where
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_nested_equal(a, e, f"{where}[{i}]")
    elif isinstance(expected, torch.Tensor):
        torch.testing.assert_close(actual, expected, rtol=0, atol=0, equal_nan=True, msg=where)
    else:
        assert actual == expected, where


# (full rounds, rows asked, rows told) at which the run is saved: any mix of pending rows,
# queued antithetic partners and a partly filled buffer, across batch boundaries.
split_points = st.integers(0, 7).flatmap(
    lambda asked: st.tuples(st.integers(0, 2), st.just(asked), st.integers(0, asked))
)


@over_variants
@pytest.mark.parametrize("restore", list(RESTORES.values()), ids=list(RESTORES))
@given(split=split_points, seed=st.integers(0, 2**31 - 1))
@example(split=(1, 3, 1), seed=0)  # pending rows, one queued partner, a partial buffer
@example(split=(0, 1, 0), seed=0)  # three queued partners, one pending row, empty buffer
@settings(max_examples=8, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_resumed_run_equals_uninterrupted_run(
    options: dict[str, Any], restore: Restore, split: tuple[int, int, int], seed: int, tmp_path: Path
) -> None:
    uninterrupted = make_opt(seed=seed, **options)
    expected = finish_run(uninterrupted, run_until_split(uninterrupted, *split))

    interrupted = make_opt(seed=seed, **options)
    pending = run_until_split(interrupted, *split)
    resumed = restore(interrupted, tmp_path / "state.pt")
    assert observable_state(resumed) == observable_state(interrupted)
    assert (resumed.config, resumed.budget) == (interrupted.config, interrupted.budget)
    np.testing.assert_array_equal(finish_run(resumed, pending), expected)
    assert_same_future(resumed, uninterrupted, cycles=1)


@over_variants
def test_saved_file_loads_weights_only(options: dict[str, Any], tmp_path: Path) -> None:
    opt = make_opt(**options)
    run_until_split(opt, 1, 3, 1)  # pending rows, a queued partner and a partial buffer
    assert opt.n_pending == 2
    path = tmp_path / "state.pt"
    opt.save(str(path))
    state = torch.load(path, weights_only=True)
    assert state["format"] == STATE_FORMAT and isinstance(state.pop("sha256"), str)  # its checksum
    assert_nested_equal(state, opt.state_dict())
    assert_same_future(ZeroGrads.from_state_dict(state), ZeroGrads.load(path))


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_survive_a_round_trip(name: str) -> None:
    config = PRESETS[name]
    assert ZeroGradsConfig.from_dict(config.to_dict()) == config
    opt = ZeroGrads(np.zeros(2), budget=100, config=config, seed=1)
    restored = ZeroGrads.from_state_dict(opt.state_dict())
    assert (restored.config, restored.budget) == (config, 100)
    assert observable_state(restored) == observable_state(opt)


@pytest.mark.parametrize("name", ["default", "surrogate", "es-averaged"])
def test_state_dict_is_a_snapshot(name: str) -> None:
    opt = make_opt(**VARIANTS[name])
    run_until_split(opt, 1, 2, 1)
    state = opt.state_dict()
    frozen = copy.deepcopy(state)
    run_cycles(opt, 2)
    assert_nested_equal(state, frozen)


@pytest.mark.parametrize("name", ["default", "surrogate", "es-averaged"])
def test_resuming_leaves_the_state_dict_unchanged(name: str) -> None:
    opt = make_opt(**VARIANTS[name])
    run_until_split(opt, 1, 2, 1)
    state = copy.deepcopy(opt.state_dict())
    frozen = copy.deepcopy(state)
    first, second = ZeroGrads.from_state_dict(state), ZeroGrads.from_state_dict(state)
    run_cycles(first, 2)
    assert_nested_equal(state, frozen)
    assert_same_future(second, ZeroGrads.from_state_dict(frozen))


def test_es_resume_before_a_batch_of_never_asked_points(tmp_path: Path) -> None:
    uninterrupted, interrupted = make_opt(estimator="es"), make_opt(estimator="es")
    run_cycles(uninterrupted, 2)
    run_cycles(interrupted, 2)
    interrupted.save(tmp_path / "state.pt")
    resumed = ZeroGrads.load(tmp_path / "state.pt")
    foreign = np.linspace(-2, 2, 12).reshape(4, 3)
    for opt in (resumed, uninterrupted):
        opt.tell(foreign, losses_of(foreign))
    assert_same_future(resumed, uninterrupted)


def test_resume_with_a_never_asked_point_among_the_asked_ones(tmp_path: Path) -> None:
    # the default's widths differ between coordinates; a never-asked point's do not matter
    uninterrupted, interrupted = make_opt(), make_opt()
    for opt in (uninterrupted, interrupted):
        run_cycles(opt, 2)
        rows = np.vstack([opt.ask()[:2], np.linspace(-2, 2, opt.dim)])
        opt.tell(rows, losses_of(rows))
    interrupted.save(tmp_path / "state.pt")
    assert_same_future(ZeroGrads.load(tmp_path / "state.pt"), uninterrupted)


@pytest.mark.parametrize("name", ["default", "surrogate"])
def test_state_saved_before_ensembles_resumes(name: str) -> None:
    """States written before ``ensemble_size`` existed hold one network's weights under
    ``layers.*`` and no ``ensemble_size`` in their config; they resume unchanged."""
    opt = make_opt(**VARIANTS[name])
    run_until_split(opt, 1, 2, 1)
    old = copy.deepcopy(opt.state_dict())
    del old["config"]["ensemble_size"]
    model = old["estimator"]["model"]
    old["estimator"]["model"] = {key.removeprefix("members.0."): value for key, value in model.items()}
    assert_same_future(ZeroGrads.from_state_dict(old), opt)
