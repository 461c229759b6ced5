"""bench.hpo's problems and runner (the comparison in docs/hpo.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")
pytest.importorskip("cmaes")
pytest.importorskip("sklearn")

from bench import hpo  # noqa: E402

HARTMANN_MINIMIZER = [0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573]
POINTS = {
    "digits-mlp": {"lr": 0.1, "width": 32, "weight_decay": 1e-4, "momentum": 0.9, "batch_size": 64},
    "inventory": {"reorder_point": 150, "order_quantity": 200, "review_days": 3, "supplier": 1},
    "hartmann6": {f"x{i}": v for i, v in enumerate(HARTMANN_MINIMIZER)},
}


@pytest.mark.parametrize("name", list(hpo.PROBLEMS))
def test_problems_are_deterministic_and_sensible(name: str) -> None:
    objective = hpo.PROBLEMS[name]
    value = objective(optuna.trial.FixedTrial(POINTS[name]))
    assert value == objective(optuna.trial.FixedTrial(POINTS[name])) and math.isfinite(value)
    if name == "hartmann6":
        assert 0 <= value < 1e-4  # the known minimizer
    if name == "digits-mlp":
        assert value < 15  # a reasonable network learns the digits in two epochs
        too_fast = {**POINTS[name], "lr": 1.0, "momentum": 0.99}
        assert objective(optuna.trial.FixedTrial(too_fast)) > 2 * value


def test_every_sampler_runs_and_the_table_reports_it() -> None:
    runs = [hpo.run("inventory", name, 0, 8) for name in [*hpo.SAMPLERS, *hpo.VARIANTS, *hpo.NEVERGRAD]]
    for r in runs:
        assert len(r.best) == 8 and np.all(np.diff(r.best) <= 0) and r.sampler_ms > 0
    text = hpo.table("inventory", runs, 8)
    assert text.count("\n| ") == len(runs) + 1 and "| n=2 | n=4 | n=8 |" in text
