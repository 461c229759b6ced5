"""Calibration sweeps behind the core defaults (docs/calibration.md).

``python -m bench.calibrate SWEEP [--budgets 960 3000 10000] [--seeds 2]`` runs every
(problem, preset, option change) of the sweep at each budget and prints a Markdown table of
median final losses (of ``recommend()``). Sweeps:

- ``steps``, ``surrogate-steps``: the step size ``lr`` of ES and of the surrogate default
  against the budget (chose the horizon rules);
- ``surrogate``: surrogate design options at one budget;
- ``defaults``: the surrogate default against its ES ablations, all with the horizon rule;
- ``recommendation``: the best evaluated point instead of theta (compare with ``defaults``).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from bench.problems import Lander, Sphere, StepNetwork
from zg_asktell import minimize, preset
from zg_asktell.problems import DiscRaster, PosterizedTexture, Problem, QuantizedQuadratic

PROBLEMS: dict[str, Callable[[], Problem]] = {
    "sphere-10": lambda: Sphere.make(10, seed=0),
    "quantized-quadratic-1000": lambda: QuantizedQuadratic.make(1000, seed=1),
    "posterized-texture-3072": lambda: PosterizedTexture.make(32, 32, 3, seed=1),
    "disc-raster-1002": lambda: DiscRaster.make(167, seed=1),
    "disc-raster-60": lambda: DiscRaster.make(10, seed=1),
    "lander-100": lambda: Lander.make(100, seed=0),
    "step-net-160": lambda: StepNetwork.make(160, seed=0),
}
Row = tuple[str, str, dict[str, Any]]
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
    {"hidden_width": 32, "encoding_frequencies": 2},
    {"hidden_layers": 1},
)
SWEEPS: dict[str, list[Row]] = {
    "steps": [(p, "es", {"lr": lr}) for p in PROBLEMS for lr in (0.05, 0.1, 0.2, 0.4, 0.8)],
    "surrogate-steps": [(p, "default", {"lr": lr}) for p in PROBLEMS for lr in (0.025, 0.05, 0.1, 0.2, 0.4)],
    "surrogate": [
        *[(p, "default", {}) for p in PROBLEMS],
        *[("quantized-quadratic-1000", "default", change) for change in SURROGATE_VARIANTS[1:]],
        *[("posterized-texture-3072", "default", change) for change in SURROGATE_VARIANTS[1:]],
    ],
    "defaults": [(p, name, {}) for p in PROBLEMS for name in ("default", "es", "es-averaged")],
    "recommendation": [(p, name, {"recommendation": "best"}) for p in PROBLEMS for name in ("default", "es")],
}


def run(problem_name: str, preset_name: str, changes: dict[str, Any], budget: int, seed: int) -> float:
    import torch

    torch.set_num_threads(1)
    problem = PROBLEMS[problem_name]()
    result = minimize(
        problem,
        problem.x0,
        lower=problem.lower,
        upper=problem.upper,
        budget=budget,
        seed=seed,
        config=preset(preset_name, **changes),
        progress=False,
    )
    return problem(result.x)

def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sweep", choices=sorted(SWEEPS))
    parser.add_argument("--budgets", type=int, nargs="+", default=[960, 3000, 10000])
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    rows, seeds, start = SWEEPS[args.sweep], args.seeds, time.perf_counter()
    jobs = [(p, n, c, b, s) for p, n, c in rows for b in args.budgets for s in range(seeds)]
    with ProcessPoolExecutor(2) as pool:
        losses = np.array(list(pool.map(run, *zip(*jobs)))).reshape(len(rows), len(args.budgets), seeds)
    starts = {p: make()(make().x0) for p, make in PROBLEMS.items()}
    print(f"`python -m bench.calibrate {args.sweep}`: median final loss over {seeds} seeds, batches of 16\n")
    print(
        "| problem (start loss) | preset | change | " + " | ".join(f"budget {b}" for b in args.budgets) + " |"
    )
    print("|---|---|---|" + "---|" * len(args.budgets))
    for (problem_name, preset_name, changes), row in zip(rows, losses):
        cells = " | ".join(f"{np.median(values):.4g}" for values in row)
        print(f"| {problem_name} ({starts[problem_name]:.3g}) | {preset_name} | {changes or '-'} | {cells} |")
    print(f"\n{time.perf_counter() - start:.0f} s on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
