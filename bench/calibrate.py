"""Calibration sweeps behind the core defaults (docs/calibration.md).

``python -m bench.calibrate [--budget 3000] [--seeds 2]`` runs every (problem, preset,
option change) of ``SWEEPS`` and prints a Markdown table of median final losses.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from zg_asktell import ZeroGrads, preset
from zg_asktell.problems import DiscRaster, PosterizedTexture, Problem, QuantizedQuadratic

PROBLEMS: dict[str, Callable[[], Problem]] = {
    "quantized-quadratic-1000": lambda: QuantizedQuadratic.make(1000, seed=1),
    "posterized-texture-3072": lambda: PosterizedTexture.make(32, 32, 3, seed=1),
    "disc-raster-1002": lambda: DiscRaster.make(167, seed=1),
    "disc-raster-60": lambda: DiscRaster.make(10, seed=1),
}
STEP_SIZES = ({"lr": 0.05}, {"lr": 0.1}, {"lr": 0.2})
SURROGATE_VARIANTS: tuple[dict[str, Any], ...] = (
    {},
    {"lr_surrogate": 3e-3},
    {"fit_steps": 10},
    {"weight_decay": 0.0},
    {"weight_decay": 1.0},
    {"encoding_frequencies": 0},
    {"encoding_frequencies": 6},
    {"zero_init_output": False},
    {"hidden_width": 16},
    {"hidden_layers": 1},
)
SWEEPS: list[tuple[str, str, dict[str, Any]]] = [
    *[(p, name, lr) for p in PROBLEMS for name in ("es", "default") for lr in STEP_SIZES],
    *[("quantized-quadratic-1000", "es-averaged", lr) for lr in STEP_SIZES],
    *[("quantized-quadratic-1000", "default", change) for change in SURROGATE_VARIANTS],
]


def run(problem_name: str, preset_name: str, changes: dict[str, Any], budget: int, seed: int) -> float:
    import torch

    torch.set_num_threads(1)
    problem = PROBLEMS[problem_name]()
    opt = ZeroGrads(
        problem.x0,
        lower=problem.lower,
        upper=problem.upper,
        budget=budget,
        seed=seed,
        config=preset(preset_name, **changes),
    )
    while opt.evaluations < budget:
        X = opt.ask()
        opt.tell(X, [problem(x) for x in X])
    return problem(opt.recommend())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--budget", type=int, default=3000)
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    start = time.perf_counter()
    jobs = [(p, n, c, args.budget, s) for p, n, c in SWEEPS for s in range(args.seeds)]
    with ProcessPoolExecutor(2) as pool:
        losses = list(pool.map(run, *zip(*jobs)))
    print(f"budget {args.budget}, median over {args.seeds} seeds\n")
    print("| problem | preset | change | final loss |\n|---|---|---|---|")
    for i, (problem_name, preset_name, changes) in enumerate(SWEEPS):
        median = np.median(losses[i * args.seeds : (i + 1) * args.seeds])
        print(f"| {problem_name} | {preset_name} | {changes or '-'} | {median:.4g} |")
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
