"""docs/hpo.md's Ray Tune recipe, run as written: NevergradSearch with ZeroGrads."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs" / "hpo.md"
pytestmark = pytest.mark.ray  # ~60 s: starts a local Ray instance; `make test-ray` installs Ray first


def recipe() -> str:
    section = DOCS.read_text().split("\n## Ray Tune\n")[1].split("\n## ")[0]
    (block,) = re.findall(r"```python\n(.*?)```", section, re.S)
    return block


def test_ray_tune_runs_zerograds_through_nevergrad_search(tmp_path: Path) -> None:
    check = """
failed = [r for r in results if r.error is not None]
point = {"x": 0.0, "layers": 4, "lr": 0.01}
enqueued = any(all(abs(r.config[k] - v) < 1e-9 for k, v in point.items()) for r in results)
print("TRIALS", len(results), "FAILED", len(failed), "ENQUEUED", enqueued, "BEST", best.metrics["loss"])
"""
    script = tmp_path / "tune_app.py"
    script.write_text(recipe() + check)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HOME": str(tmp_path),  # ~/ray_results and ~/.ray land in the test's folder
        "RAY_AUTH_MODE": "disabled",
    }
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    match = re.search(r"TRIALS (\d+) FAILED (\d+) ENQUEUED (\w+) BEST (\S+)", done.stdout)
    assert match is not None, done.stdout[-2000:]
    trials, failed, best = int(match.group(1)), int(match.group(2)), float(match.group(4))
    assert trials == 32 and 1 <= failed < 16 and match.group(3) == "True"
    assert (tmp_path / "ray_results").is_dir()
    start = (0.0 - 3.0) ** 2 + 0.1 * (4 - 6) ** 2 + (-2.0 + 3.0) ** 2
    assert best < 0.5 * start
