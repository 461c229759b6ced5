"""ZeroGrads's Optuna sampler against Optuna's TPE, CMA-ES and random sampling (docs/hpo.md).

``python -m bench.hpo [--trials 100] [--seeds 5] [--problems NAME ...] [--variants] [--nevergrad]
[--plot PATH]``

Three small problems an HPO user would recognise, each a seeded, deterministic function of
its trial's parameters:

* ``digits-mlp``: a one-hidden-layer network trained for 2 epochs of SGD on sklearn's
  bundled 8x8 digits; the loss is the validation error in percent. Learning rate and
  weight decay are log-scaled floats, width and batch size log-scaled integers, momentum
  a float.
* ``inventory``: a year of a periodic-review inventory simulator (fixed seasonal Poisson
  demand, backorders, three suppliers with different lead times and unit prices); the
  loss is the mean daily cost. Four integer settings: reorder point, order quantity
  (steps of 10), review period, supplier.
* ``hartmann6``: the Hartmann 6-D function of Bayesian-optimization benchmarks on
  ``[0, 1]^6``; the loss is the gap to its minimum -3.32237.

Each sampler gets ``--trials`` sequential trials per seed; the tables give the median
over seeds of the best loss after a quarter, half and all of the trials, and the
sampler's own time per trial (the study's time less the objective's). ZeroGrads is told
the number of trials as its ``budget``. ``--variants`` adds ZeroGrads settings for small
budgets (sigma, batch, preset ``es``). ``--nevergrad`` adds what Hydra's Nevergrad sweeper
and Ray Tune's ``NevergradSearch`` run: Nevergrad's registry optimizers (ZeroGrads,
``NGOpt``, ``CMA``, ``RandomSearch``) on the parametrization Hydra's sweeper builds from
the same bounds (``Scalar``, ``Log``, integer casting), one candidate at a time.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt
import optuna
import torch
from optuna.samplers import BaseSampler, CmaEsSampler, RandomSampler, TPESampler
from zg_asktell.adapters.optuna import ZeroGradsSampler

FloatArray = npt.NDArray[np.float64]
Objective = Callable[[Any], float]  # of an optuna.Trial or FixedTrial

EPOCHS = 2
DAYS = 365
HARTMANN_MIN = -3.32237


# ------------------------------------------------------------------------------ problems
@cache
def _digits() -> tuple[FloatArray, npt.NDArray[np.intp], FloatArray, npt.NDArray[np.intp]]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.asarray(digits.data, dtype=np.float64)
    features = (pixels - pixels.mean(axis=0)) / np.maximum(pixels.std(axis=0), 1.0)
    labels = np.asarray(digits.target, dtype=np.intp)
    order = np.random.default_rng(0).permutation(len(features))
    train, valid = order[: int(0.7 * len(order))], order[int(0.7 * len(order)) :]
    return features[train], labels[train], features[valid], labels[valid]


def digits_mlp(trial: optuna.Trial) -> float:
    """Validation error (%) of a small network after 2 epochs of SGD with these settings."""
    lr = trial.suggest_float("lr", 1e-3, 1.0, log=True)
    width = trial.suggest_int("width", 4, 128, log=True)
    weight_decay = trial.suggest_float("weight_decay", 1e-6, 1e-1, log=True)
    momentum = trial.suggest_float("momentum", 0.0, 0.99)
    batch_size = trial.suggest_int("batch_size", 16, 256, log=True)
    x_train, y_train, x_valid, y_valid = _digits()
    rng = np.random.default_rng(0)
    weights = [
        rng.standard_normal((64, width)) * math.sqrt(2 / 64),
        np.zeros(width),
        rng.standard_normal((width, 10)) * math.sqrt(1 / width),
        np.zeros(10),
    ]
    velocity = [np.zeros_like(w) for w in weights]

    def forward(x: FloatArray) -> tuple[FloatArray, FloatArray]:
        hidden = np.maximum(x @ weights[0] + weights[1], 0.0)
        return hidden, hidden @ weights[2] + weights[3]

    with np.errstate(all="ignore"):  # a diverging rate gives NaN weights: every answer wrong
        for _ in range(EPOCHS):
            for rows in np.array_split(rng.permutation(len(x_train)), math.ceil(len(x_train) / batch_size)):
                x = x_train[rows]
                hidden, logits = forward(x)
                p = np.exp(logits - logits.max(axis=1, keepdims=True))
                p /= p.sum(axis=1, keepdims=True)
                p[np.arange(len(rows)), y_train[rows]] -= 1.0  # softmax cross-entropy gradient
                p /= len(rows)
                back = (p @ weights[2].T) * (hidden > 0)
                grads = [x.T @ back, back.sum(axis=0), hidden.T @ p, p.sum(axis=0)]
                for w, v, g in zip(weights, velocity, grads):
                    v *= momentum
                    v += g + weight_decay * w  # torch.optim.SGD's momentum and weight decay
                    w -= lr * v
        predicted = forward(x_valid)[1].argmax(axis=1)
    return 100.0 * float(np.mean(predicted != y_valid))


@cache
def _demand() -> npt.NDArray[np.int64]:
    days = np.arange(DAYS)
    mean = 20.0 + 8.0 * np.sin(2 * np.pi * days / DAYS)
    return np.random.default_rng(0).poisson(mean)


# Suppliers: lead time (days) and price premium per unit over the cheapest.
LEAD_DAYS = (1, 4, 9)
PREMIUM = (0.8, 0.3, 0.0)
HOLDING, BACKORDER, ORDERING = 0.05, 1.0, 40.0  # per unit per day, per unit per day, per order


def inventory(trial: optuna.Trial) -> float:
    """Mean daily cost of a year of periodic review with these integer settings."""
    reorder_point = trial.suggest_int("reorder_point", 0, 400)
    quantity = trial.suggest_int("order_quantity", 10, 600, step=10)
    review_days = trial.suggest_int("review_days", 1, 14)
    supplier = trial.suggest_int("supplier", 0, 2)
    lead = LEAD_DAYS[supplier]
    arriving = np.zeros(DAYS + max(LEAD_DAYS) + 1, dtype=np.int64)
    stock, cost = 100, 0.0  # stock < 0: backorders
    for day, demand in enumerate(_demand()):
        stock += int(arriving[day]) - int(demand)
        if day % review_days == 0:
            position = stock + int(arriving[day + 1 : day + lead + 1].sum())
            if position <= reorder_point:
                arriving[day + lead] += quantity
                cost += ORDERING + PREMIUM[supplier] * quantity
        cost += HOLDING * max(stock, 0) + BACKORDER * max(-stock, 0)
    return cost / DAYS


_HARTMANN_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
_HARTMANN_A = np.array(
    [
        [10, 3, 17, 3.5, 1.7, 8],
        [0.05, 10, 17, 0.1, 8, 14],
        [3, 3.5, 1.7, 10, 17, 8],
        [17, 8, 0.05, 10, 0.1, 14],
    ]
)
_HARTMANN_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)


def hartmann6(trial: optuna.Trial) -> float:
    """Gap of the Hartmann 6-D function to its minimum (-3.32237) on [0, 1]^6."""
    x = np.array([trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(6)])
    value = -float(_HARTMANN_ALPHA @ np.exp(-np.sum(_HARTMANN_A * (x - _HARTMANN_P) ** 2, axis=1)))
    return value - HARTMANN_MIN


PROBLEMS: dict[str, Objective] = {"digits-mlp": digits_mlp, "inventory": inventory, "hartmann6": hartmann6}
UNITS = {
    "digits-mlp": "validation error, %",
    "inventory": "mean daily cost",
    "hartmann6": "gap to the minimum",
}


# ------------------------------------------------------------------------------ samplers
def _zerograds(**options: Any) -> Callable[[int, int], BaseSampler]:
    return lambda seed, trials: ZeroGradsSampler(seed=seed, budget=trials, **options)


SAMPLERS: dict[str, Callable[[int, int], BaseSampler]] = {
    "ZeroGrads": _zerograds(),
    "TPE": lambda seed, trials: TPESampler(seed=seed),
    "CMA-ES": lambda seed, trials: CmaEsSampler(seed=seed),
    "random": lambda seed, trials: RandomSampler(seed=seed),
}
# Small-budget settings of ZeroGrads (--variants); the default is sigma 0.2 and, at 100
# trials, batches of 16.
VARIANTS: dict[str, Callable[[int, int], BaseSampler]] = {
    "ZG sigma 0.1": _zerograds(sigma=0.1),
    "ZG sigma 0.3": _zerograds(sigma=0.3),
    "ZG batch 4": _zerograds(batch_size=4),
    "ZG batch 8": _zerograds(batch_size=8),
    "ZG es": _zerograds(preset="es"),
}


# What Hydra's sweeper and Ray Tune run (--nevergrad): Nevergrad registry names, options.
NEVERGRAD: dict[str, tuple[str, dict[str, Any]]] = {
    "ng ZeroGrads": ("ZeroGrads", {}),
    "ng ZeroGrads batch 16": ("ZeroGrads", {"batch_size": 16}),
    "ng NGOpt": ("NGOpt", {}),
    "ng CMA": ("CMA", {}),
    "ng random": ("RandomSearch", {}),
}


@dataclass(frozen=True)
class Run:
    problem: str
    sampler: str
    seed: int
    best: list[float]  # best loss after each trial
    sampler_ms: float  # per trial, the objective's time excluded


class _Timed(BaseSampler):
    """A sampler whose calls are timed: the study's sampling time without the objective's."""

    def __init__(self, inner: BaseSampler) -> None:
        self.inner = inner
        self.seconds = 0.0

    def _timed(self, method: Callable[..., Any], *args: Any) -> Any:
        start = time.perf_counter()
        try:
            return method(*args)
        finally:
            self.seconds += time.perf_counter() - start

    def infer_relative_search_space(self, study: Any, trial: Any) -> Any:
        return self._timed(self.inner.infer_relative_search_space, study, trial)

    def sample_relative(self, study: Any, trial: Any, search_space: Any) -> Any:
        return self._timed(self.inner.sample_relative, study, trial, search_space)

    def sample_independent(self, study: Any, trial: Any, name: str, distribution: Any) -> Any:
        return self._timed(self.inner.sample_independent, study, trial, name, distribution)

    def before_trial(self, study: Any, trial: Any) -> None:
        self._timed(self.inner.before_trial, study, trial)

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        self._timed(self.inner.after_trial, study, trial, state, values)


def run(problem: str, sampler: str, seed: int, trials: int) -> Run:
    """One study; the best-so-far curve and the sampler's own time per trial."""
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if sampler in NEVERGRAD:
        return _run_nevergrad(problem, sampler, seed, trials)
    timed = _Timed({**SAMPLERS, **VARIANTS}[sampler](seed, trials))
    study = optuna.create_study(sampler=timed)
    study.optimize(PROBLEMS[problem], n_trials=trials)
    values = [t.value if t.value is not None else math.inf for t in study.trials]
    return Run(problem, sampler, seed, np.minimum.accumulate(values).tolist(), 1e3 * timed.seconds / trials)


def _nevergrad_space(problem: str) -> tuple[Any, dict[str, Any]]:
    """The problem's bounds as Hydra's Nevergrad sweeper builds them, and the distributions."""
    import nevergrad as ng

    probe = optuna.create_study(sampler=RandomSampler(seed=0))
    probe.optimize(PROBLEMS[problem], n_trials=1)
    distributions: dict[str, Any] = probe.trials[0].distributions
    params = {}
    for name, d in distributions.items():
        scalar = (ng.p.Log if d.log else ng.p.Scalar)(lower=d.low, upper=d.high)
        if isinstance(d, optuna.distributions.IntDistribution):
            scalar.set_integer_casting()
        params[name] = scalar
    return ng.p.Dict(**params), distributions


def _run_nevergrad(problem: str, name: str, seed: int, trials: int) -> Run:
    import nevergrad as ng
    from zg_asktell.adapters.nevergrad import ParametrizedZeroGrads  # registers "ZeroGrads"

    parametrization, distributions = _nevergrad_space(problem)
    parametrization.random_state.seed(seed)
    registered, options = NEVERGRAD[name]
    family = ParametrizedZeroGrads(options=options) if options else ng.optimizers.registry[registered]
    optimizer = family(parametrization=parametrization, budget=trials)
    values, seconds = [], 0.0
    for _ in range(trials):
        start = time.perf_counter()
        candidate = optimizer.ask()
        seconds += time.perf_counter() - start
        params = {key: _on_step(distributions[key], value) for key, value in candidate.value.items()}
        values.append(PROBLEMS[problem](optuna.trial.FixedTrial(params)))
        start = time.perf_counter()
        optimizer.tell(candidate, values[-1])
        seconds += time.perf_counter() - start
    return Run(problem, name, seed, np.minimum.accumulate(values).tolist(), 1e3 * seconds / trials)


def _on_step(distribution: Any, value: Any) -> Any:
    """An int parameter with a step rounded to it (Hydra's sweeper has no steps)."""
    if isinstance(distribution, optuna.distributions.IntDistribution) and distribution.step > 1:
        step, low = distribution.step, distribution.low
        return int(min(distribution.high, low + round((value - low) / step) * step))
    return value


# ------------------------------------------------------------------------------- reports
def table(problem: str, runs: list[Run], trials: int) -> str:
    """Markdown: median best loss after 1/4, 1/2 and all trials, and sampler time."""
    marks = [trials // 4, trials // 2, trials]
    lines = [
        f"**{problem}** ({UNITS[problem]}; best after n trials, median of {len({r.seed for r in runs})})",
        "",
        "| sampler | " + " | ".join(f"n={m}" for m in marks) + " | sampler ms/trial |",
        "|---|" + "---:|" * (len(marks) + 1),
    ]
    for name in dict.fromkeys(r.sampler for r in runs):
        own = [r for r in runs if r.sampler == name]
        medians = [float(np.median([r.best[m - 1] for r in own])) for m in marks]
        ms = float(np.median([r.sampler_ms for r in own]))
        lines.append(f"| {name} | " + " | ".join(f"{v:.3g}" for v in medians) + f" | {ms:.1f} |")
    return "\n".join(lines)


def plot(path: str, runs: list[Run], problems: list[str]) -> None:
    """Median best-so-far curves, one panel per problem."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(problems), figsize=(4.2 * len(problems), 3.4), squeeze=False)
    for axis, problem in zip(axes[0], problems):
        own = [r for r in runs if r.problem == problem]
        for name in dict.fromkeys(r.sampler for r in own):
            curves = np.array([r.best for r in own if r.sampler == name])
            style = "-" if name in SAMPLERS else "--" if name in NEVERGRAD else ":"
            axis.plot(np.arange(1, curves.shape[1] + 1), np.median(curves, axis=0), style, label=name)
        axis.set_title(problem)
        axis.set_xlabel("trials")
        axis.set_ylabel(UNITS[problem])
        axis.set_yscale("log")
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def _warm_up() -> None:
    """Import what a first update imports (torch's optimizers: seconds), outside the timings."""
    from zg_asktell import ZeroGrads

    opt = ZeroGrads(np.zeros(2), budget=4, batch_size=4, seed=0)
    X = opt.ask()
    opt.tell(X, [0.0, 1.0, 2.0, 3.0])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    parser.add_argument("--variants", action="store_true", help="add ZeroGrads's small-budget settings")
    parser.add_argument("--nevergrad", action="store_true", help="add Nevergrad's optimizers (Hydra, Ray)")
    parser.add_argument("--only", nargs="+", default=None, help="run only these rows (e.g. 'TPE')")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--plot", default=None, help="write the curves to this PNG")
    args = parser.parse_args()
    samplers = [*SAMPLERS, *(VARIANTS if args.variants else []), *(NEVERGRAD if args.nevergrad else [])]
    if args.only:
        unknown = sorted(set(args.only) - {*SAMPLERS, *VARIANTS, *NEVERGRAD})
        if unknown:
            parser.error(f"unknown rows {unknown}; choose from {[*SAMPLERS, *VARIANTS, *NEVERGRAD]}")
        samplers = args.only
    tasks = [(p, s, seed) for p in args.problems for s in samplers for seed in range(args.seeds)]
    start = time.perf_counter()
    with ProcessPoolExecutor(args.jobs, initializer=_warm_up) as pool:
        runs = list(pool.map(run, *zip(*tasks), [args.trials] * len(tasks)))
    for problem in args.problems:
        print(table(problem, [r for r in runs if r.problem == problem], args.trials), end="\n\n")
    print(f"{len(runs)} studies of {args.trials} trials in {time.perf_counter() - start:.0f} s")
    if args.plot:
        plot(args.plot, runs, args.problems)


if __name__ == "__main__":
    main()
