"""The documentation's examples run and do what they say."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import numpy as np

import zg_asktell._optimizer

ROOT = Path(__file__).resolve().parents[1]


def test_docstring_examples_pass() -> None:
    result = doctest.testmod(zg_asktell._optimizer)
    assert result.attempted > 0
    assert result.failed == 0


def test_readme_example_runs_and_improves() -> None:
    block = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block is not None
    namespace: dict[str, object] = {}
    exec(compile(block.group(1), "README.md", "exec"), namespace)
    simulator, x_best = namespace["simulator"], namespace["x_best"]
    assert callable(simulator) and isinstance(x_best, np.ndarray)
    assert simulator(x_best) < 0.3 * simulator(np.full(1000, 1.0))
