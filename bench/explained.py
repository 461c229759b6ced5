"""How much of each fresh batch the surrogate predicts, and what that buys (docs/surrogate.md).

``python -m bench.explained [--problems NAME ...] [--budgets 3000 30000] [--seeds 3]``

Runs the default (the surrogate as a control variate) and preset ``es`` on each problem of
``bench.calibrate`` named, and prints, per problem and budget, the medians over seeds of
``ZeroGrads.surrogate_explained`` (the share of a batch's antithetic loss differences the
surrogate predicted before it was fit on them: about the share of ES's gradient variance
the control variate removes) averaged over each quarter of the run, next to the
default's final loss as a ratio to ES's.
"""

from __future__ import annotations

import argparse
import itertools
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from bench.calibrate import PROBLEMS, THOUSANDS, noiseless
from bench.calibrate import run as run_preset
from zg_asktell import ZeroGrads, preset

SMALL = ("sphere-10", "rosenbrock-2", "hard-edge-1d", "disc-raster-60", "lander-100", "step-net-160")
QUARTERS = 4


def shares(problem_name: str, budget: int, seed: int) -> tuple[list[float], float]:
    """The default's mean explained share in each quarter of the run, and its final loss."""
    import torch

    torch.set_num_threads(1)
    problem = PROBLEMS[problem_name]()
    opt = ZeroGrads(
        problem.x0,
        lower=problem.lower,
        upper=problem.upper,
        budget=budget,
        seed=seed,
        config=preset("default"),
    )
    trace: list[float] = []
    while opt.evaluations < budget:
        X = opt.ask()
        opt.tell(X, [problem(x) for x in X])
        trace.append(opt.surrogate_explained or 0.0)
    quarters = [float(np.mean(part)) for part in np.array_split(np.array(trace), QUARTERS)]
    return quarters, noiseless(problem)(opt.recommend())


def table(
    problems: list[str],
    budgets: list[int],
    seeds: int,
    results: list[tuple[list[float], float]],
    es: list[float],
) -> str:
    """Markdown rows, one per (problem, budget), from results in ``itertools.product`` order."""
    cells = len(problems) * len(budgets)
    quarters = np.array([r[0] for r in results]).reshape(cells, seeds, QUARTERS)
    losses = np.array([r[1] for r in results]).reshape(cells, seeds)
    es_losses = np.array(es).reshape(cells, seeds)
    lines = [
        "| problem (variables) | budget | "
        + " | ".join(f"share, quarter {q + 1}" for q in range(QUARTERS))
        + " | default / ES |",
        "|---|---|" + "---|" * QUARTERS + "---|",
    ]
    for k, (name, budget) in enumerate(itertools.product(problems, budgets)):
        share = np.median(quarters[k], axis=0)
        default, plain = np.median(losses[k]), np.median(es_losses[k])
        ratio = "both 0" if default == plain == 0 else f"{default / plain:.2f}x" if plain > 0 else "ES 0"
        dim = PROBLEMS[name]().dim
        lines.append(
            f"| {name} ({dim:,}) | {budget} | " + " | ".join(f"{s:.3f}" for s in share) + f" | {ratio} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--problems", nargs="+", default=[*SMALL, *THOUSANDS], choices=sorted(PROBLEMS))
    parser.add_argument("--budgets", type=int, nargs="+", default=[3000, 30000])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    start = time.perf_counter()
    cells = list(itertools.product(args.problems, args.budgets, range(args.seeds)))
    with ProcessPoolExecutor(2) as pool:
        results = list(pool.map(shares, *zip(*cells)))
        es = list(pool.map(run_preset, *zip(*[(p, "es", {}, b, s) for p, b, s in cells])))
    budgets = " ".join(map(str, args.budgets))
    print(
        f"`python -m bench.explained --problems {' '.join(args.problems)} --budgets {budgets} "
        f"--seeds {args.seeds}`: medians over {args.seeds} seeds\n"
    )
    print(table(args.problems, args.budgets, args.seeds, results, es))
    print(f"\n{time.perf_counter() - start:.0f} s on 2 cores")


if __name__ == "__main__":
    main()
