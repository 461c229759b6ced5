"""Nevergrad's own generic optimizer tests, run against "ZeroGrads".

The test bodies are the installed ``nevergrad`` package's, called directly: its pytest
parametrization samples third-party registry names at random, so collecting it would
mostly skip ours. The bodies also shed load by themselves, keyed on hashes of the
optimizer's name, a coin flip on ``np.random`` and the ``CI`` variable. :func:`_run_body`
therefore calls a body under "ZeroGrads" and, where the body sheds that name, under
aliases that register the very same class, until one runs; a body that never tells a
ZeroGrads optimizer fails instead of being skipped. ``np.random`` is seeded per test.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import string
import unittest
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from nevergrad.optimization import base
from nevergrad.optimization import test_optimizerlib as ng_lib
from nevergrad.optimization import test_suggest as ng_suggest
from nevergrad.optimization.multiobjective import test_core as ng_mo
from zg_asktell.adapters.nevergrad import ZeroGrads

NAME = "ZeroGrads"
# NAME, then ZeroGradsAliasA..Z, ZeroGradsAliasAA..ZZ: enough names for any body to run
ALIASES = [NAME] + [
    f"{NAME}Alias{''.join(letters)}"
    for size in (1, 2)
    for letters in itertools.product(string.ascii_uppercase, repeat=size)
]


@pytest.fixture(autouse=True)
def _seeded() -> None:
    np.random.seed(0)  # noqa: NPY002  (Nevergrad seeds parametrizations from it)
    random.seed(0)


@pytest.fixture
def told(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Losses told to any ZeroGrads optimizer during the test."""
    losses: list[float] = []
    tell = ZeroGrads.tell

    def counting_tell(self: ZeroGrads, candidate: Any, loss: Any, *args: Any, **kwargs: Any) -> None:
        losses.append(loss)
        tell(self, candidate, loss, *args, **kwargs)

    monkeypatch.setattr(ZeroGrads, "tell", counting_tell)
    return losses


@contextlib.contextmanager
def _registered(name: str) -> Iterator[None]:
    """Register ``name`` as ZeroGrads for the time of the block (unless it is NAME)."""
    if name == NAME:
        yield
        return
    base.registry.register_name(name, ZeroGrads)
    try:
        yield
    finally:
        base.registry.unregister(name)


def _run_body(body: Callable[[str], None], told: list[float]) -> str:
    """Run ``body(name)`` under the first name of ``ALIASES`` it does not shed.

    Only a skip or an early return without any tell moves on to the next name: a body
    that fails, fails the test.
    """
    for alias in ALIASES:
        try:
            with _registered(alias):
                body(alias)
        except unittest.SkipTest:
            continue
        if told:
            return alias
    pytest.fail(f"{body.__name__} skipped or returned early under all {len(ALIASES)} names")


def test_check_optimizer(told: list[float]) -> None:
    ng_lib.check_optimizer(ZeroGrads, budget=300, verify_value=True)
    assert len(told) >= 301  # the budget, then one point never asked


@pytest.mark.parametrize(
    "body",
    [
        ng_lib.test_optimizers,
        ng_lib.test_infnan,
        ng_lib.test_optimizers_minimal,
        ng_suggest.test_suggest_optimizers,
        ng_suggest.test_optimizers_suggest,
        ng_mo.test_optimizers_multiobjective,
        ng_lib.test_mo_constrained,
        ng_lib.test_mo_with_nan,
    ],
    ids=lambda body: body.__name__,
)
def test_generic_body(body: Callable[[str], None], told: list[float]) -> None:
    _run_body(body, told)


def test_parametrization_offset(told: list[float], monkeypatch: pytest.MonkeyPatch) -> None:
    # Under CI, the body returns before testing for every name over two characters long.
    monkeypatch.setattr(ng_lib, "CI", False)
    _run_body(ng_lib.test_parametrization_offset, told)


def test_optim_pickle() -> None:
    ng_lib.test_optim_pickle(NAME)


def _seeded_recommendation(seed: int) -> np.ndarray:
    # The protocol of test_optimizers_recommendation, whose recorded values (a csv file
    # inside nevergrad) and name-length filter exclude third-party optimizers.
    fitness = ng_lib.Fitness([0.5, -0.8, 0, 4, 5, 2.7])
    optimizer = base.registry[NAME](parametrization=6, budget=80, num_workers=1)
    optimizer.parametrization.random_state.seed(seed)
    return np.asarray(optimizer.minimize(fitness).value)


def test_seeded_recommendation_reproducible() -> None:
    first = _seeded_recommendation(12)
    np.random.seed(1)  # noqa: NPY002  (the global state must not matter)
    np.testing.assert_array_equal(_seeded_recommendation(12), first)
    assert not np.array_equal(_seeded_recommendation(13), first)
