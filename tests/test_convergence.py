"""Convergence on non-differentiable problems: stated loss within a stated budget.

Each row: a built-in problem whose gradient is zero or undefined almost everywhere,
the evaluation budget, and the largest allowed final loss as a fraction of the start
loss, checked for several seeds with the default configuration.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from zg_asktell import minimize
from zg_asktell.problems import DiscRaster, IntegerProgram, Problem, QuantizedQuadratic

SEEDS = (0, 1, 2)
FAST_CASES: list[tuple[Callable[..., Problem], int, int, float]] = [
    # (problem factory, size argument, budget, max final/start loss ratio)
    (QuantizedQuadratic.make, 10, 1000, 0.1),
    (QuantizedQuadratic.make, 100, 3000, 0.1),
    (IntegerProgram.make, 10, 1000, 0.2),
    (IntegerProgram.make, 100, 3000, 0.2),
    (DiscRaster.make, 2, 1000, 0.85),  # 12 parameters: visibility local minima remain
    (DiscRaster.make, 17, 3000, 0.35),  # 102 parameters
]
SLOW_CASES: list[tuple[Callable[..., Problem], int, int, float]] = [
    (QuantizedQuadratic.make, 1000, 6000, 0.6),
    # The closed-loop step settles longer than the open-loop schedule's here: 0.56-0.68 of
    # the start loss against its 0.28-0.30 (docs/benchmarks.md, "Robustness to the starting sigma").
    (IntegerProgram.make, 1000, 6000, 0.75),
    (DiscRaster.make, 167, 6000, 0.35),  # 1002 parameters
]


def optimize(problem: Problem, budget: int, seed: int) -> float:
    result = minimize(
        problem,
        problem.x0,
        lower=problem.lower,
        upper=problem.upper,
        budget=budget,
        seed=seed,
        progress=False,
    )
    return problem(result.x) / problem(problem.x0)


def check(make: Callable[..., Problem], size: int, budget: int, max_ratio: float, seed: int) -> None:
    problem = make(size, seed=seed)
    ratio = optimize(problem, budget, seed)
    assert np.isfinite(ratio)
    assert ratio <= max_ratio, f"{problem.name} seed {seed}: final/start loss {ratio:.3f} > {max_ratio}"


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("make", "size", "budget", "max_ratio"), FAST_CASES)
def test_converges_low_dimensional(
    make: Callable[..., Problem], size: int, budget: int, max_ratio: float, seed: int
) -> None:
    check(make, size, budget, max_ratio, seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("make", "size", "budget", "max_ratio"), SLOW_CASES)
def test_converges_thousand_dimensional(
    make: Callable[..., Problem], size: int, budget: int, max_ratio: float, seed: int
) -> None:
    check(make, size, budget, max_ratio, seed)


def test_beats_random_search_on_hard_edge_rendering() -> None:
    problem = DiscRaster.make(17, seed=5)
    rng = np.random.default_rng(1005)  # not the stream that drew the target
    random_best = min(problem(rng.uniform(0, 1, problem.dim)) for _ in range(3000))
    assert optimize(problem, 3000, seed=5) * problem(problem.x0) < 0.5 * random_best
