"""Benchmark problems: plain, seeded functions of a vector, generated in code.

Every family maps a dimension to one deterministic instance (``make_problem``). All but
the smooth controls are non-differentiable or have a zero gradient almost everywhere:

* ``quantized-quadratic``, ``integer``, ``disc-raster``, ``texture`` come from
  :mod:`zg_asktell.problems`;
* ``step-net``: a digits classifier with Heaviside hidden units, loss = training error;
* ``lander``: a 2-D lander with on/off thrusters per time step and ground contact;
* ``sphere``, ``rosenbrock``, ``ellipsoid``: smooth BBOB-style controls where classic
  methods should win.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from zg_asktell.problems import (
    DiscRaster,
    FloatArray,
    IntegerProgram,
    PosterizedTexture,
    Problem,
    QuantizedQuadratic,
)
from zg_asktell.scenes.led import LedDisplay  # noqa: F401 (the benchmark's name for it)
from zg_asktell.scenes.strokes import SUBPIXEL_STRATA


def initial_sigma(problem: Problem) -> float:
    """The starting search width every optimizer gets: a tenth of the (uniform) box width."""
    return 0.1 * float(np.median(problem.upper - problem.lower))


def _box(dim: int, low: float, high: float) -> tuple[FloatArray, FloatArray]:
    return np.full(dim, low), np.full(dim, high)


@dataclass
class Sphere(Problem):
    """``sum((x - x_opt)^2)`` with ``x_opt`` uniform in [-4, 4]: optimum 0."""

    x_opt: FloatArray = field(repr=False, default_factory=lambda: np.zeros(1))

    @classmethod
    def make(cls, dim: int, seed: int = 0) -> Sphere:
        lower, upper = _box(dim, -5.0, 5.0)
        x_opt = np.random.default_rng(seed).uniform(-4, 4, dim)
        return cls(name=f"sphere-{dim}", x0=np.zeros(dim), lower=lower, upper=upper, x_opt=x_opt)

    def __call__(self, x: npt.ArrayLike) -> float:
        return float(np.sum((np.asarray(x, dtype=np.float64) - self.x_opt) ** 2))


@dataclass
class Rosenbrock(Problem):
    """BBOB f8: Rosenbrock on ``z = max(1, sqrt(d)/8) (x - x_opt) + 1``: optimum 0."""

    x_opt: FloatArray = field(repr=False, default_factory=lambda: np.zeros(1))

    @classmethod
    def make(cls, dim: int, seed: int = 0) -> Rosenbrock:
        lower, upper = _box(dim, -5.0, 5.0)
        x_opt = np.random.default_rng(seed).uniform(-3, 3, dim)
        return cls(name=f"rosenbrock-{dim}", x0=np.zeros(dim), lower=lower, upper=upper, x_opt=x_opt)

    def __call__(self, x: npt.ArrayLike) -> float:
        z = max(1.0, math.sqrt(self.dim) / 8) * (np.asarray(x, dtype=np.float64) - self.x_opt) + 1
        return float(np.sum(100 * (z[:-1] ** 2 - z[1:]) ** 2 + (z[:-1] - 1) ** 2))


@dataclass
class RotatedEllipsoid(Problem):
    """BBOB f10 (large-scale style): condition 1e6 after a permuted block rotation.

    ``z = R P (x - x_opt)`` with a random permutation ``P`` and a block-diagonal random
    orthogonal ``R`` (blocks of at most 40), so it scales to any dimension; optimum 0.
    """

    x_opt: FloatArray = field(repr=False, default_factory=lambda: np.zeros(1))
    permutation: npt.NDArray[np.intp] = field(repr=False, default_factory=lambda: np.zeros(1, np.intp))
    blocks: list[FloatArray] = field(repr=False, default_factory=list)
    weights: FloatArray = field(repr=False, default_factory=lambda: np.ones(1))

    block_size = 40

    @classmethod
    def make(cls, dim: int, seed: int = 0) -> RotatedEllipsoid:
        rng = np.random.default_rng(seed)
        sizes = [min(cls.block_size, dim - start) for start in range(0, dim, cls.block_size)]
        blocks = [np.linalg.qr(rng.standard_normal((n, n)))[0] for n in sizes]
        lower, upper = _box(dim, -5.0, 5.0)
        return cls(
            name=f"ellipsoid-{dim}",
            x0=np.zeros(dim),
            lower=lower,
            upper=upper,
            x_opt=rng.uniform(-4, 4, dim),
            permutation=rng.permutation(dim),
            blocks=blocks,
            weights=10.0 ** (6 * np.arange(dim) / max(dim - 1, 1)),
        )

    def __call__(self, x: npt.ArrayLike) -> float:
        shifted = (np.asarray(x, dtype=np.float64) - self.x_opt)[self.permutation]
        rotated, start = np.empty_like(shifted), 0
        for block in self.blocks:
            stop = start + len(block)
            rotated[start:stop] = block @ shifted[start:stop]
            start = stop
        return float(np.sum(self.weights * rotated**2))


@dataclass
class StepNetwork(Problem):
    """Digits classifier ``argmax(W2 H(W1 f + b1) + b2)`` with Heaviside hidden units.

    The parameters are all weights and biases (``75 * hidden + 10`` of them); the loss is
    the error rate on sklearn's bundled 8x8 digits (1,797 images, standardised pixels), a
    step function of every parameter.
    """

    features: FloatArray = field(repr=False, default_factory=lambda: np.zeros((1, 64)))
    labels: npt.NDArray[np.intp] = field(repr=False, default_factory=lambda: np.zeros(1, np.intp))
    hidden: int = 1

    @staticmethod
    def dimension(hidden: int) -> int:
        return 64 * hidden + hidden + 10 * hidden + 10

    @classmethod
    def make(cls, dim: int, seed: int = 0) -> StepNetwork:
        from sklearn.datasets import load_digits

        hidden = (dim - 10) // 75
        if hidden < 1 or cls.dimension(hidden) != dim:
            raise ValueError(f"step-net dimensions are 75*hidden+10 (85, 160, 610, ...), got {dim}")
        digits = load_digits()
        pixels = np.asarray(digits.data, dtype=np.float64)
        features = (pixels - pixels.mean(axis=0)) / np.maximum(pixels.std(axis=0), 1.0)
        lower, upper = _box(dim, -1.0, 1.0)
        return cls(
            name=f"step-net-{dim}",
            x0=np.random.default_rng(seed).uniform(-0.5, 0.5, dim),
            lower=lower,
            upper=upper,
            features=features,
            labels=np.asarray(digits.target, dtype=np.intp),
            hidden=hidden,
        )

    def __call__(self, x: npt.ArrayLike) -> float:
        w = np.asarray(x, dtype=np.float64)
        h, n_in = self.hidden, self.features.shape[1]
        w1, rest = w[: n_in * h].reshape(n_in, h), w[n_in * h :]
        b1, w2, b2 = rest[:h], rest[h : 11 * h].reshape(h, 10), rest[11 * h :]
        active = (self.features @ w1 + b1 > 0).astype(np.float64)
        predicted = np.argmax(active @ w2 + b2, axis=1)
        return float(np.mean(predicted != self.labels))


@dataclass
class Lander(Problem):
    """A 2-D point-mass lander: on/off thrusters per time step, loss at ground contact.

    Parameters in [0, 1]: ``steps`` main-engine values (on above 0.5) then ``steps``
    side-thruster values (left below 1/3, right above 2/3), over a fixed 30 s horizon.
    The flight stops at the first step below the ground; the loss adds the miss distance
    to the pad, the touchdown speed, 1 for a crash (speed above 2 m/s), 1 plus the
    height for never landing, and a small fuel term. Every term is a step function of
    the parameters (thresholds, first contact).
    """

    start: FloatArray = field(repr=False, default_factory=lambda: np.zeros(4))  # x, y, vx, vy
    pad: float = 0.0

    horizon = 30.0
    gravity = 1.62
    main_thrust = 4.0
    side_thrust = 1.0
    safe_speed = 2.0

    @classmethod
    def make(cls, dim: int, seed: int = 0) -> Lander:
        if dim < 2 or dim % 2:
            raise ValueError(f"lander dimensions are 2 * time steps (even), got {dim}")
        rng = np.random.default_rng(seed)
        steps = dim // 2
        start = np.array([rng.uniform(-30, 30), rng.uniform(80, 120), rng.uniform(-3, 3), rng.uniform(-2, 0)])
        x0 = np.concatenate([np.full(steps, 0.4), np.full(steps, 0.5)])  # all thrusters off
        lower, upper = _box(dim, 0.0, 1.0)
        return cls(
            name=f"lander-{dim}", x0=x0, lower=lower, upper=upper, start=start, pad=rng.uniform(-20, 20)
        )

    def __call__(self, x: npt.ArrayLike) -> float:
        u = np.asarray(x, dtype=np.float64)
        steps = self.dim // 2
        dt = self.horizon / steps
        engine = u[:steps] > 0.5
        side = (u[steps:] > 2 / 3).astype(np.float64) - (u[steps:] < 1 / 3)
        vx = self.start[2] + np.cumsum(self.side_thrust * side) * dt
        vy = self.start[3] + np.cumsum(self.main_thrust * engine - self.gravity) * dt
        px = self.start[0] + np.cumsum(vx) * dt
        py = self.start[1] + np.cumsum(vy) * dt
        below = np.flatnonzero(py <= 0)
        if below.size == 0:
            fuel = (np.count_nonzero(engine) + np.count_nonzero(side)) / steps
            return float(1 + py[-1] / 100 + abs(px[-1] - self.pad) / 20 + 0.05 * fuel)
        k = int(below[0])
        speed = math.hypot(vx[k], vy[k])
        fuel = (np.count_nonzero(engine[: k + 1]) + np.count_nonzero(side[: k + 1])) / steps
        return float(abs(px[k] - self.pad) / 20 + speed / 5 + (speed > self.safe_speed) + 0.05 * fuel)


@dataclass
class HardEdge1D(Problem):
    """The paper's 1-D toy in shape: a box of width 0.4 at ``x`` drawn on 64 pixels (hard
    edges), squared error to the box at 0.5; a staircase with a plateau once they part."""

    pixels = 64
    width = 0.4
    goal = 0.5

    @classmethod
    def make(cls, dim: int = 1, seed: int = 0) -> HardEdge1D:
        if dim != 1:
            raise ValueError(f"hard-edge-1d has one parameter, got dimension {dim}")
        lower, upper = _box(1, -1.0, 1.0)
        start = np.random.default_rng(seed).uniform(-0.3, -0.1, 1)
        return cls(name="hard-edge-1d", x0=start, lower=lower, upper=upper)

    def _draw(self, position: float) -> FloatArray:
        grid = (np.arange(self.pixels) + 0.5) / self.pixels * 2 - 1
        return (np.abs(grid - position) < self.width / 2).astype(np.float64)

    def __call__(self, x: npt.ArrayLike) -> float:
        position = float(np.asarray(x, dtype=np.float64).reshape(-1)[0])
        return float(np.mean((self._draw(position) - self._draw(self.goal)) ** 2))


@dataclass
class MonteCarloRaster(DiscRaster):
    """``DiscRaster`` rendered like a path tracer: ``samples`` random sub-pixel positions per
    pixel and call, so every evaluation is noisy; ``expected`` scores with 8x8 stratified
    samples (the converged image)."""

    samples: int = 1
    rng: np.random.Generator = field(repr=False, default_factory=lambda: np.random.default_rng(0))

    @classmethod
    def noisy(cls, n_discs: int, samples: int, seed: int = 0, size: int = 32) -> MonteCarloRaster:
        base = DiscRaster.make(n_discs, seed=seed, size=size)
        fields = {name: getattr(base, name) for name in ("name", "x0", "lower", "upper", "target", "size")}
        problem = cls(**fields, samples=samples, rng=np.random.default_rng(seed + 1))
        problem.name = f"mc-raster-{problem.dim}-{samples}spp"
        return problem

    def sampled(self, x: npt.ArrayLike) -> FloatArray:
        """One noisy image: ``samples`` random sub-pixel positions per pixel."""
        return self._image(x, self.rng.uniform(0, 1, (self.samples, self.size, self.size, 2)))

    def converged(self, x: npt.ArrayLike) -> FloatArray:
        """The image the noisy ones average to (8x8 stratified sub-pixel samples)."""
        return self._image(x, SUBPIXEL_STRATA[:, None, None, :])

    def _image(self, x: npt.ArrayLike, offsets: FloatArray) -> FloatArray:
        """The image averaged over sub-pixel ``offsets`` (k, size, size, 2) or (k, 1, 1, 2)."""
        shape = (self.size, self.size, 2)
        return np.mean([self.render(x, np.broadcast_to(offset, shape)) for offset in offsets], axis=0)

    def __call__(self, x: npt.ArrayLike) -> float:
        return float(np.mean((self.sampled(x) - self.target) ** 2))

    def expected(self, x: npt.ArrayLike) -> float:
        return float(np.mean((self.converged(x) - self.target) ** 2))


@dataclass
class AdditiveNoise(Problem):
    """``base(x)`` plus Gaussian noise of standard deviation ``scale`` on every call;
    ``expected`` is the noiseless loss."""

    base: Problem = field(repr=False, default_factory=lambda: Sphere.make(1))
    scale: float = 0.0
    rng: np.random.Generator = field(repr=False, default_factory=lambda: np.random.default_rng(0))

    @classmethod
    def around(cls, base: Problem, relative: float, seed: int = 0) -> AdditiveNoise:
        """Noise of ``relative`` times the loss at the start point."""
        return cls(
            name=f"{base.name}+{relative:g}noise",
            x0=base.x0,
            lower=base.lower,
            upper=base.upper,
            base=base,
            scale=relative * base(base.x0),
            rng=np.random.default_rng(seed + 1),
        )

    def __call__(self, x: npt.ArrayLike) -> float:
        return self.base(x) + self.scale * float(self.rng.standard_normal())

    def expected(self, x: npt.ArrayLike) -> float:
        return self.base(x)


@dataclass
class Coco(Problem):
    """A COCO/BBOB function (package ``coco-experiment``): loss = f(x) - f_opt.

    Built on problems nobody here wrote, as held-out checks of constants chosen on the rest
    of the suite: ``bbob-mixint`` (integer variables: plateaus) and ``bbob-largescale``.
    """

    suite: str = "bbob-mixint"
    function: int = 1
    optimum: float = 0.0
    evaluate: Callable[[FloatArray], float] | None = field(repr=False, default=None)
    owner: object = field(repr=False, default=None)  # the suite: its problems die with it

    @classmethod
    def make(cls, suite: str, function: int, dim: int) -> Coco:
        try:
            import cocoex
        except ImportError:
            raise SystemExit("COCO problems need coco-experiment: pip install coco-experiment") from None
        options = f"function_indices: {function} dimensions: {dim} instance_indices: 1"
        owner = cocoex.Suite(suite, "", options)
        problem = owner[0]
        short = suite.removeprefix("bbob-")
        return cls(
            name=f"{short}-f{function}-{dim}",
            x0=np.asarray(problem.initial_solution, dtype=np.float64),
            lower=np.asarray(problem.lower_bounds, dtype=np.float64),
            upper=np.asarray(problem.upper_bounds, dtype=np.float64),
            suite=suite,
            function=function,
            optimum=float(cocoex.BareProblem("bbob", function, dim, problem.id_instance).best_value()),
            evaluate=problem,
            owner=owner,
        )

    def __call__(self, x: npt.ArrayLike) -> float:
        assert self.evaluate is not None
        return float(self.evaluate(np.asarray(x, dtype=np.float64))) - self.optimum


def _texture(dim: int, seed: int) -> PosterizedTexture:
    side = math.isqrt(dim // 3)
    if 3 * side * side != dim:
        raise ValueError(f"texture dimensions are 3 * side^2 (192, 3072, 49152, 196608), got {dim}")
    return PosterizedTexture.make(side, side, seed=seed)


def _disc_raster(dim: int, seed: int) -> DiscRaster:
    if dim < 6 or dim % 6:
        raise ValueError(f"disc-raster dimensions are 6 * discs, got {dim}")
    return DiscRaster.make(dim // 6, seed=seed)


@dataclass(frozen=True)
class Family:
    """A problem class and how to build its instance of a given dimension from a seed."""

    kind: type[Problem]
    build: Callable[[int, int], Problem]
    smooth: bool = False

    @property
    def summary(self) -> str:
        return f"`{self.kind.__name__}`: " + (self.kind.__doc__ or "").strip().splitlines()[0]


FAMILIES: dict[str, Family] = {
    "sphere": Family(Sphere, Sphere.make, smooth=True),
    "rosenbrock": Family(Rosenbrock, Rosenbrock.make, smooth=True),
    "ellipsoid": Family(RotatedEllipsoid, RotatedEllipsoid.make, smooth=True),
    "quantized-quadratic": Family(QuantizedQuadratic, QuantizedQuadratic.make),
    "integer": Family(IntegerProgram, IntegerProgram.make),
    "disc-raster": Family(DiscRaster, _disc_raster),
    "texture": Family(PosterizedTexture, _texture),
    "step-net": Family(StepNetwork, StepNetwork.make),
    "lander": Family(Lander, Lander.make),
    # Held out (COCO): never used to choose a constant (docs/benchmarks.md, robustness).
    "mixint-f1": Family(Coco, lambda dim, seed: Coco.make("bbob-mixint", 1, dim)),
    "mixint-f10": Family(Coco, lambda dim, seed: Coco.make("bbob-mixint", 10, dim)),
    "largescale-f8": Family(Coco, lambda dim, seed: Coco.make("bbob-largescale", 8, dim), smooth=True),
    "largescale-f20": Family(Coco, lambda dim, seed: Coco.make("bbob-largescale", 20, dim), smooth=True),
}


def make_problem(family: str, dim: int, seed: int = 0) -> Problem:
    """The ``dim``-dimensional instance of ``family`` drawn from ``seed``."""
    if family not in FAMILIES:
        raise ValueError(f"unknown problem family {family!r}; choose from {sorted(FAMILIES)}")
    problem = FAMILIES[family].build(dim, seed)
    if problem.dim != dim:
        raise ValueError(f"{family} cannot be built with dimension {dim} (got {problem.dim})")
    return problem
