"""The documentation's examples run and do what they say."""

from __future__ import annotations

import doctest
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import zg_asktell._optimizer
import zg_asktell.torch
from zg_asktell import ZeroGrads

ROOT = Path(__file__).resolve().parents[1]
GETTING_STARTED = ROOT / "docs" / "getting-started.md"


def blocks(path: Path, language: str) -> list[str]:
    """The fenced code blocks of ``language`` in a Markdown file, in order."""
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(), re.S)


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


def test_getting_started_ask_tell_example_solves_the_staircase() -> None:
    namespace: dict[str, object] = {}
    exec(compile(blocks(GETTING_STARTED, "python")[0], "docs/getting-started.md", "exec"), namespace)
    staircase, x0, x_best = namespace["staircase"], namespace["x0"], namespace["x_best"]
    assert callable(staircase) and isinstance(x_best, np.ndarray)
    assert staircase(x_best) < 0.05 * staircase(x0)


@pytest.mark.slow
def test_getting_started_minimize_and_command_line_examples_run(tmp_path: Path) -> None:
    """The page's other blocks as a user runs them: the Python one as a script, the shell ones in bash."""
    python_blocks, bash_blocks = blocks(GETTING_STARTED, "python"), blocks(GETTING_STARTED, "bash")
    assert len(python_blocks) == 2 and len(bash_blocks) == 2  # every block of the page is run here or above
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    (tmp_path / "example.py").write_text(python_blocks[1])
    for command in ([sys.executable, "example.py"], *(["bash", "-e", "-c", block] for block in bash_blocks)):
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
    for name, budget in (("zg-run-py", 2000), ("zg-run-cli", 2000), ("zg-run-files", 192)):
        optimizer = ZeroGrads.load(tmp_path / name / "state.pt")
        assert optimizer.evaluations == budget and optimizer.best_loss < 160  # 160: the loss at x0
    assert (tmp_path / "zg-run-cli" / "plot.png").is_file()


def test_readme_links_every_page_of_the_site_and_each_link_resolves() -> None:
    readme = (ROOT / "README.md").read_text()
    targets = set(re.findall(r"\]\((docs/[^)#]+)", readme))
    missing = [target for target in sorted(targets) if not (ROOT / target).is_file()]
    assert not missing, f"README links to files that do not exist: {missing}"
    toctrees = re.findall(r"```\{toctree\}\n(.*?)```", (ROOT / "docs" / "index.md").read_text(), re.S)
    entries = {line for tree in toctrees for line in tree.splitlines() if line and line[0] != ":"}
    pages = {f"docs/{entry}.md" for entry in entries if not entry.startswith("auto_examples/")}  # built
    assert len(pages) > 10 and all((ROOT / page).is_file() for page in pages)
    assert pages <= targets, f"README links no {sorted(pages - targets)}"
