"""Every optimizer of the benchmark behind one batch ask/tell interface.

* ZeroGrads presets through the core API (``ZeroGrads``, ``ZG-surrogate``, ``ZG-reference``,
  and the ablations ``ZG-es``, ``ZG-es-averaged``), all with the benchmark's batch size, and
  ``ZG-anytime``: the default not told the budget (robustness sweep only);
* ``PRDPT``: our implementation of plateau-reduced gradient descent (antithetic
  Gaussian-smoothing gradient estimate fed to Adam, sigma held, then decayed linearly);
* ``sep-CMA``: pycma with ``CMA_diagonal=True`` and population = batch size;
* ``SNES``: our implementation of separable natural evolution strategies (what EvoTorch
  and evosax offer for high dimension), population = batch size;
* ``PGPE``: our implementation of PGPE with ClipUp (EvoTorch's default pairing), symmetric
  pairs = batch size;
* Nevergrad's ``CMA`` (``DiagonalCMA`` from d >= 2000), ``SPSA``, ``TBPSA``, ``NGOpt``,
  ``OnePlusOne`` and ``RandomSearch`` from its registry, ``num_workers`` = batch size
  (SPSA refuses parallel workers: it runs sequentially, one candidate per ask).

pycma >= 4 switches to TPA step-size adaptation from d >= 300; TPA needs each population
asked once and told whole, which Nevergrad 1.0.12 breaks when its population exceeds
``num_workers`` ("Mean shift samples are expected but missing"). Nevergrad runs therefore
set pycma's documented ``TPA_dimension`` threshold out of reach, i.e. use CSA as pycma does
below d = 300. Each benchmark run is its own process, so ``sep-CMA`` keeps pycma's default.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import numpy as np

from zg_asktell import ZeroGrads, preset
from zg_asktell.problems import FloatArray, Problem

DIAGONAL_CMA_FROM = 2000  # full CMA keeps a d x d covariance: diagonal from here on


@dataclass(frozen=True)
class Setting:
    """What every optimizer gets: the problem, start width, budget, batch size, seed."""

    problem: Problem
    sigma: float
    budget: int
    batch: int
    seed: int


class Peer(Protocol):
    batch: int  # candidates per ask: the setting's batch size unless the method cannot batch

    @property
    def note(self) -> str:
        """A remark for the tables (variant used, choices made); "" if none."""

    def ask(self, n: int) -> FloatArray:
        """``n`` candidates (at most the batch size) as an (n, d) array."""

    def tell(self, X: FloatArray, losses: FloatArray) -> None:
        """The losses of the rows of the last ``ask``."""

    def recommend(self) -> FloatArray:
        """The optimizer's current answer."""


class ZeroGradsPeer:
    """A ZeroGrads preset; ``knows_budget=False`` keeps the budget from it (an anytime run)."""

    def __init__(self, preset_name: str, setting: Setting, knows_budget: bool = True) -> None:
        problem = setting.problem
        config = preset(preset_name)
        self.batch = setting.batch
        self.note = (
            ""
            if config.batch_size == setting.batch
            else f"batch {setting.batch} (preset: {config.batch_size})"
        )
        self.optimizer = ZeroGrads(
            problem.x0,
            setting.sigma,
            lower=problem.lower,
            upper=problem.upper,
            budget=setting.budget if knows_budget else None,
            config=config.replace(batch_size=setting.batch),
            seed=setting.seed,
        )

    def ask(self, n: int) -> FloatArray:
        return self.optimizer.ask(n)

    def tell(self, X: FloatArray, losses: FloatArray) -> None:
        self.optimizer.tell(X, losses)

    def recommend(self) -> FloatArray:
        return self.optimizer.recommend()


class PRDPT:
    """Plateau-reduced gradient descent (Fischer & Ritschel 2023), written for this suite.

    Each batch holds ``batch/2`` antithetic pairs ``theta +- sigma*eps``; the gradient of the
    Gaussian-smoothed loss is estimated as ``mean((f+ - f-) / (2 sigma) * eps)`` and fed to
    Adam with a fixed step. Sigma stays at its start value for the first ``hold`` of the
    budget, then decays linearly to ``sigma_min`` times it; the answer is ``theta``.
    """

    hold = 0.5
    sigma_min = 0.1
    lr = 0.1  # Adam step in units of the initial sigma
    betas = (0.9, 0.999)

    def __init__(self, setting: Setting) -> None:
        self.setting = setting
        self.batch = setting.batch
        self.note = ""
        self.theta = setting.problem.x0.copy()
        self.m = np.zeros_like(self.theta)
        self.v = np.zeros_like(self.theta)
        self.steps = 0
        self.evaluations = 0
        self.rng = np.random.default_rng(setting.seed)
        self.eps = np.zeros((0, self.theta.size))
        self.sigma = setting.sigma

    def _current_sigma(self) -> float:
        progress = self.evaluations / self.setting.budget
        decay = max(0.0, progress - self.hold) / (1 - self.hold)
        return self.setting.sigma * (1 - (1 - self.sigma_min) * min(decay, 1.0))

    def ask(self, n: int) -> FloatArray:
        self.sigma = self._current_sigma()
        self.eps = self.rng.standard_normal(((n + 1) // 2, self.theta.size))
        offsets = np.stack([self.eps, -self.eps], axis=1).reshape(-1, self.theta.size)[:n]
        problem = self.setting.problem
        return np.clip(self.theta + self.sigma * offsets, problem.lower, problem.upper)

    def tell(self, X: FloatArray, losses: FloatArray) -> None:
        self.evaluations += len(losses)
        pairs = len(losses) // 2
        if pairs == 0:
            return
        differences = losses[0 : 2 * pairs : 2] - losses[1 : 2 * pairs : 2]
        gradient = differences / (2 * self.sigma) @ self.eps[:pairs] / pairs
        beta1, beta2 = self.betas
        self.steps += 1
        self.m = beta1 * self.m + (1 - beta1) * gradient
        self.v = beta2 * self.v + (1 - beta2) * gradient**2
        m_hat = self.m / (1 - beta1**self.steps)
        v_hat = self.v / (1 - beta2**self.steps)
        step = self.lr * self.setting.sigma * m_hat / (np.sqrt(v_hat) + 1e-8)
        problem = self.setting.problem
        self.theta = np.clip(self.theta - step, problem.lower, problem.upper)

    def recommend(self) -> FloatArray:
        return self.theta.copy()


class SepCMA:
    """pycma's separable CMA-ES (``CMA_diagonal=True``), population = batch size."""

    def __init__(self, setting: Setting) -> None:
        import cma

        problem = setting.problem
        self.batch = setting.batch
        self.note = ""
        options = {
            "CMA_diagonal": True,
            "popsize": setting.batch,
            "bounds": [problem.lower, problem.upper],
            "seed": setting.seed + 1,  # pycma reads seed 0 as "random"
            "verbose": -9,
        }
        self.es = cma.CMAEvolutionStrategy(problem.x0, setting.sigma, options)
        self.x0 = problem.x0

    def ask(self, n: int) -> FloatArray:
        return np.asarray(self.es.ask()[:n])

    def tell(self, X: FloatArray, losses: FloatArray) -> None:
        self.es.tell(list(X), list(losses))

    def recommend(self) -> FloatArray:
        best = self.es.result.xbest
        return self.x0.copy() if best is None else np.asarray(best, dtype=np.float64)


class _DiagonalGaussian:
    """What SNES and PGPE share: a centre ``mu`` (the answer) and one width per coordinate."""

    def __init__(self, setting: Setting) -> None:
        problem = setting.problem
        self.setting = setting
        self.batch = setting.batch
        self.note = ""
        self.mu = problem.x0.copy()
        self.widths = np.full(problem.dim, setting.sigma)
        self.rng = np.random.default_rng(setting.seed)

    def recommend(self) -> FloatArray:
        return self.mu.copy()


class SNES(_DiagonalGaussian):
    """Separable natural evolution strategies (Schaul, Glasmachers & Schmidhuber 2011).

    A diagonal Gaussian ``N(mu, diag(s)^2)``; each generation of ``batch`` samples is ranked,
    weighted by the paper's fitness-shaping utilities, and moves ``mu`` (rate 1) and
    ``log s`` (rate ``(3 + ln d) / (5 sqrt d)``) along the natural gradient. O(batch * d)
    time and O(d) memory per generation. Candidates are clipped to the box; the update
    uses the unclipped samples; ``mu`` is kept inside the box. The answer is ``mu``.
    """

    def __init__(self, setting: Setting) -> None:
        super().__init__(setting)
        problem = setting.problem
        self.noise = np.zeros((0, problem.dim))
        ranks = np.arange(1, setting.batch + 1)
        raw = np.maximum(0.0, math.log(setting.batch / 2 + 1) - np.log(ranks))
        self.utilities = raw / raw.sum() - 1 / setting.batch  # best first
        self.width_rate = (3 + math.log(problem.dim)) / (5 * math.sqrt(problem.dim))

    def ask(self, n: int) -> FloatArray:
        self.noise = self.rng.standard_normal((n, self.mu.size))
        problem = self.setting.problem
        return np.clip(self.mu + self.widths * self.noise, problem.lower, problem.upper)

    def tell(self, X: FloatArray, losses: FloatArray) -> None:
        if len(losses) < self.batch:  # a partial last generation: too few samples to rank
            return
        weights = self.utilities[np.argsort(np.argsort(losses))]
        problem = self.setting.problem
        self.mu = np.clip(self.mu + self.widths * (weights @ self.noise), problem.lower, problem.upper)
        self.widths = self.widths * np.exp(0.5 * self.width_rate * (weights @ (self.noise**2 - 1)))


class PGPE(_DiagonalGaussian):
    """Policy gradients with parameter-based exploration (Sehnke et al. 2010), written for
    this suite with EvoTorch's default options for it (symmetric pairs, centred ranks,
    ClipUp, widths changing by at most 20% per generation).

    ``batch/2`` symmetric pairs ``mu +- eps``, ``eps ~ N(0, diag(s)^2)``, ranked together
    (centred ranks in [-0.5, 0.5], best highest). The centre follows ``sum_k (u+ - u-) / 2
    eps_k / pairs`` with ClipUp (Toklu et al. 2020: the normalised gradient into a velocity
    of momentum 0.9 and step ``max_speed / 2``, the velocity's norm clipped at
    ``max_speed``); the widths follow ``sum_k ((u+ + u-) / 2) (eps_k^2 - s^2) / s / pairs``
    at rate 0.1, each changing by at most 20% per generation. The two rates are set per task
    in EvoTorch; here ``max_speed`` is a fifteenth of the starting radius ``sigma * sqrt(d)``
    and the width's rate 0.1, for every problem. Candidates are clipped to the box, ``mu``
    kept inside it; the answer is ``mu``.
    """

    momentum = 0.9
    speed_share = 1 / 15  # max_speed over the starting radius
    width_rate = 0.1
    width_max_change = 0.2

    def __init__(self, setting: Setting) -> None:
        super().__init__(setting)
        problem = setting.problem
        self.velocity = np.zeros(problem.dim)
        self.max_speed = self.speed_share * setting.sigma * math.sqrt(problem.dim)
        self.eps = np.zeros((0, problem.dim))

    def ask(self, n: int) -> FloatArray:
        self.eps = self.widths * self.rng.standard_normal(((n + 1) // 2, self.mu.size))
        offsets = np.stack([self.eps, -self.eps], axis=1).reshape(-1, self.mu.size)[:n]
        problem = self.setting.problem
        return np.clip(self.mu + offsets, problem.lower, problem.upper)

    def tell(self, X: FloatArray, losses: FloatArray) -> None:
        pairs = len(losses) // 2
        if pairs < self.batch // 2:  # a partial last generation: too few samples to rank
            return
        ranks = np.argsort(np.argsort(losses[: 2 * pairs]))  # 0: the lowest loss (NaN last)
        utilities = 0.5 - ranks / (2 * pairs - 1)
        plus, minus, eps = utilities[0::2], utilities[1::2], self.eps[:pairs]
        center = (plus - minus) / 2 @ eps / pairs
        norm = np.linalg.norm(center)
        if norm > 0:
            self.velocity = self.momentum * self.velocity + self.max_speed / 2 * center / norm
        speed = np.linalg.norm(self.velocity)
        if speed > self.max_speed:
            self.velocity *= self.max_speed / speed
        problem = self.setting.problem
        self.mu = np.clip(self.mu + self.velocity, problem.lower, problem.upper)
        gradient = (plus + minus) / 2 @ ((eps**2 - self.widths**2) / self.widths) / pairs
        limit = self.width_max_change * self.widths
        self.widths = self.widths + np.clip(self.width_rate * gradient, -limit, limit)


class NevergradPeer:
    """An optimizer from Nevergrad's registry, told in whole batches (``num_workers``)."""

    def __init__(self, name: str, setting: Setting) -> None:
        import cma
        import nevergrad as ng

        cma.evolution_strategy.TPA_dimension = sys.maxsize  # CSA at every d: see module doc
        problem = setting.problem
        if name == "CMA" and problem.dim >= DIAGONAL_CMA_FROM:
            name = "DiagonalCMA"
        self.name = name
        family = ng.optimizers.registry[name]
        self.batch = 1 if getattr(family, "no_parallelization", False) else setting.batch
        parametrization = ng.p.Array(init=problem.x0, lower=problem.lower, upper=problem.upper)
        parametrization.set_mutation(sigma=setting.sigma)
        parametrization.random_state = np.random.RandomState(setting.seed)
        self.optimizer = family(
            parametrization=parametrization, budget=setting.budget, num_workers=self.batch
        )
        self.candidates: list[Any] = []

    @property
    def note(self) -> str:
        if self.batch == 1:
            return f"sequential: {self.name} cannot batch"
        if self.name == "DiagonalCMA":
            return f"DiagonalCMA (d >= {DIAGONAL_CMA_FROM})"
        chosen = getattr(self.optimizer, "optim", None)  # NGOpt's selected optimizer
        return f"chose {chosen.name}" if chosen is not None else ""

    def ask(self, n: int) -> FloatArray:
        self.candidates = [self.optimizer.ask() for _ in range(n)]
        return np.stack([np.asarray(c.value, dtype=np.float64) for c in self.candidates])

    def tell(self, X: FloatArray, losses: FloatArray) -> None:
        for candidate, loss in zip(self.candidates, losses, strict=True):
            self.optimizer.tell(candidate, float(loss))

    def recommend(self) -> FloatArray:
        return np.asarray(self.optimizer.provide_recommendation().value, dtype=np.float64)


ZEROGRADS_PRESETS = {
    "ZeroGrads": "default",
    "ZG-schedule": "schedule",
    "ZG-surrogate": "surrogate",
    "ZG-reference": "reference",
    "ZG-es": "es",
    "ZG-es-averaged": "es-averaged",
}
NEVERGRAD = ("CMA", "SPSA", "TBPSA", "NGOpt", "OnePlusOne", "RandomSearch")

OPTIMIZERS: dict[str, Callable[[Setting], Peer]] = {
    **{label: partial(ZeroGradsPeer, name) for label, name in ZEROGRADS_PRESETS.items()},
    "ZG-anytime": partial(ZeroGradsPeer, "default", knows_budget=False),
    "PRDPT": PRDPT,
    "sep-CMA": SepCMA,
    "SNES": SNES,
    "PGPE": PGPE,
    **{name: partial(NevergradPeer, name) for name in NEVERGRAD},
}
OURS = (*ZEROGRADS_PRESETS, "ZG-anytime")  # ZeroGrads and its ablations; the others are peers
SWEEP_ONLY = ("PGPE", "ZG-anytime")  # of the robustness sweep, not of bench.run's default list
ES_ABLATION = "ZG-es"


def make_peer(optimizer: str, setting: Setting) -> Peer:
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose from {list(OPTIMIZERS)}")
    return OPTIMIZERS[optimizer](setting)
