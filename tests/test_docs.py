"""The documentation's examples run and do what they say."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import zg_asktell._optimizer
import zg_asktell.torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("module", [zg_asktell._optimizer, zg_asktell.torch])
def test_docstring_examples_pass(module: object) -> None:
    result = doctest.testmod(module)  # type: ignore[arg-type]
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


def test_usage_learned_smoothing_example_trains_the_encoder() -> None:
    text = (ROOT / "docs" / "usage.md").read_text().split("## Training a network through a black box")[1]
    block = re.search(r"```python\n(.*?)```", text, re.S)
    assert block is not None
    namespace: dict[str, object] = {}
    exec(compile(block.group(1), "docs/usage.md", "exec"), namespace)
    encoder = namespace["encoder"]
    assert isinstance(encoder, torch.nn.Linear) and encoder.weight.grad is not None
    assert float(encoder.weight.grad.abs().sum()) > 0


def test_usage_adaptive_width_example_grows_sigma() -> None:
    text = (ROOT / "docs" / "usage.md").read_text().split("## Step size and sampling width")[1]
    block = re.search(r"```python\n(.*?)```", text, re.S)
    assert block is not None
    namespace: dict[str, object] = {}
    exec(compile(block.group(1), "docs/usage.md", "exec"), namespace)  # asserts inside
    assert namespace["opt"].history.shape == (60, 3)  # type: ignore[attr-defined]
