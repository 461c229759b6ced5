"""The benchmark's quick preset runs end to end: every row, a loss or a failure reason."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_quick_preset_produces_every_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    from bench.run import DEFAULT_OPTIMIZERS, PRESETS

    completed = subprocess.run(
        [sys.executable, "-m", "bench.run", "--preset", "quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]

    preset = PRESETS["quick"]
    expected = {
        (family, dim, name, seed, budget)
        for family, dims in preset.problems.items()
        for dim in dims
        for name in DEFAULT_OPTIMIZERS
        for seed in range(preset.seeds)
        for budget in preset.budgets
    }
    runs = json.loads((tmp_path / "results.json").read_text())["runs"]
    produced = [
        (
            r["task"]["family"],
            r["task"]["dim"],
            r["task"]["optimizer"],
            r["task"]["seed"],
            r["task"]["budget"],
        )
        for r in runs
    ]
    assert sorted(produced) == sorted(expected)
    for run in runs:
        if run["failure"] is None:
            assert math.isfinite(run["loss"]), run
            assert all(math.isfinite(loss) for _, loss in run["curve"]), run
        else:
            assert run["failure"].strip(), run

    for family, dims in preset.problems.items():
        for dim in dims:
            assert (tmp_path / f"curves_{family}-{dim}.png").is_file()
            for name in DEFAULT_OPTIMIZERS:
                assert f"| {name} |" in completed.stdout
            assert f"| {family}-{dim} | {preset.budgets[-1]} |" in completed.stdout  # against ES


def test_ablation_table_divides_each_preset_by_the_es_ablation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    from bench.report import Cell, ablation_table

    cells = {
        ("lander-10", 960, "ZG-es"): Cell(losses=[2.0, 4.0, 3.0]),
        ("lander-10", 960, "ZeroGrads"): Cell(losses=[1.5]),
        ("lander-10", 960, "PRDPT"): Cell(losses=[0.1]),
    }
    table = ablation_table(cells, ["lander-10"], [960], ["ZeroGrads", "ZG-surrogate", "ZG-es", "PRDPT"])
    header, _, row = table.splitlines()
    assert header == "| problem | budget | ZG-es median | ZeroGrads / ZG-es | ZG-surrogate / ZG-es |"
    assert row == "| lander-10 | 960 | 3 | 0.50x | – |"


def test_snes_ranks_by_loss_and_converges_on_a_sphere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    from bench.peers import SNES, Setting
    from bench.problems import Sphere

    problem = Sphere.make(20, seed=0)
    snes = SNES(Setting(problem, sigma=1.0, budget=4000, batch=16, seed=0))
    assert abs(snes.utilities.sum()) < 1e-12 and np.argmax(snes.utilities) == 0  # best first
    start = problem(snes.recommend())
    for _ in range(250):
        X = snes.ask(16)
        snes.tell(X, np.array([problem(x) for x in X]))
    assert problem(snes.recommend()) < 1e-3 * start
    assert snes.widths.max() < 0.1  # the step size adapted down


def test_pgpe_follows_the_better_sample_of_each_pair_and_converges_on_a_sphere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    from bench.peers import PGPE, Setting
    from bench.problems import Sphere

    problem = Sphere.make(20, seed=0)
    pgpe = PGPE(Setting(problem, sigma=1.0, budget=8000, batch=16, seed=0))
    X = pgpe.ask(16)
    assert np.allclose(X[0] - problem.x0, problem.x0 - X[1])  # symmetric pairs
    losses = np.zeros(16)
    losses[1] = -1.0  # the minus sample of the first pair is best: the centre moves toward it
    pgpe.tell(X, losses)
    assert np.dot(pgpe.recommend() - problem.x0, X[1] - problem.x0) > 0
    start = problem(pgpe.recommend())
    for _ in range(500):
        X = pgpe.ask(16)
        pgpe.tell(X, np.array([problem(x) for x in X]))
    assert problem(pgpe.recommend()) < 1e-2 * start
    assert pgpe.widths.max() < 0.5  # the widths adapted down


def test_robustness_runs_can_replace_a_controller_constant_and_restore_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    from bench.robustness import arguments, run_with_constants
    from bench.run import Task, run_task
    from zg_asktell import _control

    args = arguments().parse_args(["--set", "_STEP_BIAS=0.5"])
    assert args.set == [("_STEP_BIAS", 0.5)]
    with pytest.raises(SystemExit):
        arguments().parse_args(["--set", "_STEP_BAIS=0.5"])
    assert "no numeric constant '_STEP_BAIS'" in capsys.readouterr().err
    task = Task("quantized-quadratic", 20, "ZeroGrads", 0, 6400, 16, 600.0, 4.0)  # 400 updates: h = 0.5
    changed = run_with_constants((("_STEP_BIAS", 0.5),), task)
    assert _control._STEP_BIAS == 0.1  # restored
    assert changed.loss != run_task(task).loss


def test_scaling_table_gives_each_peer_its_ratio_to_zerograds_and_failures_their_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    from bench.scaling import markdown

    def row(optimizer: str, ms: float | None, failure: str | None = None) -> dict[str, object]:
        return dict(
            dim=1000,
            optimizer=optimizer,
            batch=16,
            ask_ms=ms,
            tell_ms=ms,
            peak_memory_mb=5.0,
            failure=failure,
        )

    data = {"started": "now", "machine": "here", "iterations": 3}
    data["measurements"] = [row("ZeroGrads", 4.0), row("SNES", 0.4), row("CMA", None, "memory cap 8 GiB")]
    lines = markdown(data).splitlines()
    assert "| 1000 | 4.00 | 4.0 | 500 | 5 | |" in lines
    assert "| 1000 | 500, 5 MB | 50 (0.1x), 5 MB | failed: memory cap 8 GiB |" in lines


def test_snes_keeps_its_answer_inside_the_box(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    from bench.peers import SNES, Setting
    from zg_asktell.problems import Problem

    box = Problem("slope", x0=np.zeros(50), lower=np.full(50, -1.0), upper=np.ones(50))
    snes = SNES(Setting(box, sigma=0.5, budget=3200, batch=16, seed=0))
    for _ in range(200):  # the loss falls without end along -x: the box must stop it
        X = snes.ask(16)
        snes.tell(X, X.sum(axis=1))
    assert np.all(snes.recommend() >= -1.0) and snes.recommend().mean() < -0.9


def test_robustness_merge_writes_the_merged_results_a_later_file_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    from dataclasses import asdict

    from bench.robustness import main
    from bench.run import RunResult, Task

    def results(name: str, loss: float, optimizers: tuple[str, ...], time_cap: float) -> Path:
        scales = (0.1, 1.0)
        tasks = [Task("sphere", 10, o, 0, 64, 16, time_cap, 4.0, s) for o in optimizers for s in scales]
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"runs": [asdict(RunResult(t, loss, curve=[(64, loss)])) for t in tasks]}))
        return path

    first = results("first", 2.0, ("ZeroGrads", "sep-CMA"), time_cap=60.0)
    rerun = results("rerun", 1.0, ("ZeroGrads",), time_cap=120.0)  # another cap: the same cells
    assert main(["--from-results", str(first), str(rerun), "--out", str(tmp_path / "merged")]) == 0
    merged = json.loads((tmp_path / "merged" / "results.json").read_text())
    losses = {(r["task"]["optimizer"], r["task"]["sigma_scale"]): r["loss"] for r in merged["runs"]}
    assert len(merged["runs"]) == 4
    assert losses == {
        ("ZeroGrads", 0.1): 1.0,
        ("ZeroGrads", 1.0): 1.0,
        ("sep-CMA", 0.1): 2.0,
        ("sep-CMA", 1.0): 2.0,
    }
    assert merged["merged_from"] == [str(first), str(rerun)]


def test_robustness_first_seed_adds_seeds_without_rerunning_the_earlier_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    from bench.robustness import arguments, build

    args = arguments().parse_args(["--problems", "sphere:10", "--optimizers", "ZeroGrads", "--seeds", "2"])
    assert sorted({task.seed for task in build(args)}) == [0, 1]
    args = arguments().parse_args(
        ["--problems", "sphere:10", "--optimizers", "ZeroGrads", "--seeds", "2", "--first-seed", "2"]
    )
    assert sorted({task.seed for task in build(args)}) == [2, 3]


def test_zg_anytime_is_the_default_not_told_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    from bench.peers import Setting, make_peer
    from zg_asktell.problems import Problem

    sphere = Problem("sphere", x0=np.zeros(4), lower=np.full(4, -1.0), upper=np.ones(4))
    setting = Setting(sphere, sigma=0.5, budget=320, batch=16, seed=0)
    told, anytime = make_peer("ZeroGrads", setting), make_peer("ZG-anytime", setting)
    assert (told.optimizer.budget, anytime.optimizer.budget) == (320, None)
    assert told.optimizer.config == anytime.optimizer.config


def test_robustness_targets_count_each_optimizer_against_the_best_other(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    from bench.robustness import targets
    from bench.run import RunResult, Task

    def run(dim: int, name: str, loss: float, scale: float = 1.0) -> RunResult:
        return RunResult(Task("sphere", dim, name, 0, 64, 16, 60.0, 4.0, scale), loss, curve=[(64, loss)])

    results = [
        *(run(1000, "ZeroGrads", 1.2), run(1000, "sep-CMA", 1.0)),  # within 1.25x, not first
        *(run(1000, "ZeroGrads", 1.0, 10.0), run(1000, "sep-CMA", 2.0, 10.0)),  # first; sep-CMA 2x
        *(run(10, "ZeroGrads", 1e-12), run(10, "sep-CMA", 1e-10)),  # both at the optimum: level
        *(run(10, "ZeroGrads", 1.0, 10.0), run(10, "sep-CMA", 0.5, 10.0)),  # 2x: beyond 1.5x
        run(1000, "ZG-anytime", 1e-3),  # the default not told the budget rivals no one
    ]
    rows = targets(results, ["ZeroGrads", "sep-CMA"]).splitlines()[2:]
    assert rows == [
        "| ZeroGrads | 64 | 2 of 2 | 1 | 1 of 2 | 2x |",
        "| sep-CMA | 64 | 1 of 2 | 1 | 2 of 2 | 2x |",
    ]
