"""docs/hpo.md's Hydra recipe, run as written: a real multirun sweep with ZeroGrads."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("hydra_plugins.hydra_nevergrad_sweeper")
yaml = pytest.importorskip("yaml")

DOCS = Path(__file__).resolve().parents[1] / "docs" / "hpo.md"


def blocks(language: str) -> list[str]:
    section = DOCS.read_text().split("\n## Hydra\n")[1].split("\n## ")[0]
    return re.findall(rf"```{language}\n(.*?)```", section, re.S)


@pytest.mark.slow  # ~25 s: a fresh interpreter imports Hydra, Nevergrad and torch
def test_hydra_multirun_sweeps_with_zerograds(tmp_path: Path) -> None:
    (config,) = blocks("yaml")
    (app,) = blocks("python")
    command = blocks("bash")[1].split()
    assert command[:2] == ["python", "app.py"]
    (tmp_path / "config.yaml").write_text(config)
    (tmp_path / "app.py").write_text(app)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, *command[1:]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    log = done.stdout + done.stderr
    assert "NevergradSweeper(optimizer=ZeroGrads, budget=16, num_workers=2)" in log
    assert "Warning" not in done.stderr and "Error" not in done.stderr, done.stderr
    assert len(re.findall(r"\t#\d+ : ", log)) == 16
    (results,) = tmp_path.glob("multirun/*/*/optimization_results.yaml")
    best = yaml.safe_load(results.read_text())
    start = (0.0 - 3.0) ** 2 + 0.1 * (4 - 6) ** 2 + (-2.0 + 3.0) ** 2
    assert best["best_evaluated_result"] < start
    assert 1 <= best["best_evaluated_params"]["layers"] <= 8
