"""Built-in non-differentiable test problems, generated from a seed (no downloads).

Each problem is a callable ``f(x) -> float`` on a vector with ``dim``, ``x0`` and box
bounds ``lower``/``upper``; its gradient is zero or undefined almost everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass
class Problem:
    """Base of the built-in problems: a name, a start point and box bounds."""

    name: str
    x0: FloatArray
    lower: FloatArray
    upper: FloatArray

    @property
    def dim(self) -> int:
        return int(self.x0.size)

    def __call__(self, x: npt.ArrayLike) -> float:
        raise NotImplementedError

    def losses(self, X: npt.ArrayLike) -> FloatArray:
        """The losses of the rows of ``X`` (n, dim); problems that can vectorise override it."""
        return np.array([self(x) for x in np.asarray(X, dtype=np.float64)], dtype=np.float64)


@dataclass
class QuantizedQuadratic(Problem):
    """``mean((round(levels*x)/levels - target)^2)``: a staircase bowl, flat on every step."""

    target: FloatArray = field(repr=False, default_factory=lambda: np.zeros(1))
    levels: float = 4.0

    @classmethod
    def make(cls, dim: int, seed: int = 0, levels: float = 4.0) -> QuantizedQuadratic:
        rng = np.random.default_rng(seed)
        return cls(
            name=f"quantized-quadratic-{dim}",
            x0=np.zeros(dim),
            lower=np.full(dim, -2.0),
            upper=np.full(dim, 2.0),
            target=rng.uniform(-1, 1, dim),
            levels=levels,
        )

    def __call__(self, x: npt.ArrayLike) -> float:
        q = np.round(np.asarray(x, dtype=np.float64) * self.levels) / self.levels
        return float(np.mean((q - self.target) ** 2))


@dataclass
class IntegerProgram(Problem):
    """Integer parameters by rounding: ``mean(|round(x) - target|)`` with integer targets."""

    target: FloatArray = field(repr=False, default_factory=lambda: np.zeros(1))

    @classmethod
    def make(cls, dim: int, seed: int = 0) -> IntegerProgram:
        rng = np.random.default_rng(seed)
        return cls(
            name=f"integer-{dim}",
            x0=np.zeros(dim),
            lower=np.full(dim, -10.0),
            upper=np.full(dim, 10.0),
            target=rng.integers(-5, 6, dim).astype(np.float64),
        )

    def __call__(self, x: npt.ArrayLike) -> float:
        return float(np.mean(np.abs(np.round(np.asarray(x, dtype=np.float64)) - self.target)))


@dataclass
class DiscRaster(Problem):
    """Hard-edged rasterizer: coloured discs painted in order, MSE to a target image.

    Each disc has 6 parameters in [0, 1]: centre x, centre y, radius (x 0.3), R, G, B.
    A pixel takes the colour of the last disc covering it (visibility), else black.
    """

    target: FloatArray = field(repr=False, default_factory=lambda: np.zeros(1))
    size: int = 32

    @classmethod
    def make(cls, n_discs: int, seed: int = 0, size: int = 32) -> DiscRaster:
        rng = np.random.default_rng(seed)
        dim = 6 * n_discs
        problem = cls(
            name=f"disc-raster-{dim}",
            x0=rng.uniform(0.25, 0.75, dim),
            lower=np.zeros(dim),
            upper=np.ones(dim),
            size=size,
        )
        problem.target = problem.render(rng.uniform(0, 1, dim))
        return problem

    def render(self, x: npt.ArrayLike, offset: FloatArray | None = None) -> FloatArray:
        """The (size, size, 3) image of parameters ``x``, sampled at each pixel's centre or
        at sub-pixel positions ``offset`` (size, size, 2) in [0, 1)."""
        discs = np.clip(np.asarray(x, dtype=np.float64), 0, 1).reshape(-1, 6)
        cells = np.arange(self.size)
        offset = np.full((self.size, self.size, 2), 0.5) if offset is None else offset
        px = (cells[None, :] + offset[..., 0]) / self.size
        py = (cells[:, None] + offset[..., 1]) / self.size
        dx = px[None] - discs[:, 0, None, None]
        dy = py[None] - discs[:, 1, None, None]
        inside = dx**2 + dy**2 < (0.3 * discs[:, 2, None, None]) ** 2
        top = len(discs) - 1 - np.argmax(inside[::-1], axis=0)
        image = discs[top, 3:]
        return np.where(np.any(inside, axis=0)[..., None], image, 0.0)

    def __call__(self, x: npt.ArrayLike) -> float:
        return float(np.mean((self.render(x) - self.target) ** 2))


@dataclass
class PosterizedTexture(Problem):
    """A texture seen through posterization (``floor(levels*x)/levels``), MSE to a target.

    The parameters are the texture's ``height*width*channels`` values in [0, 1]; the
    target is a smooth procedural image, so the best loss is the quantization error.
    """

    target: FloatArray = field(repr=False, default_factory=lambda: np.zeros(1))
    levels: int = 8

    @classmethod
    def make(
        cls, height: int, width: int, channels: int = 3, seed: int = 0, levels: int = 8
    ) -> PosterizedTexture:
        rng = np.random.default_rng(seed)
        yy, xx = np.meshgrid(np.linspace(0, 1, height), np.linspace(0, 1, width), indexing="ij")
        phases = rng.uniform(0, 2 * np.pi, (channels, 3))
        freqs = rng.uniform(1, 4, (channels, 3))
        target = np.stack(
            [
                0.5
                + 0.25 * np.sin(2 * np.pi * f[0] * xx + p[0]) * np.cos(2 * np.pi * f[1] * yy + p[1])
                + 0.2 * np.sin(2 * np.pi * f[2] * (xx + yy) + p[2])
                for f, p in zip(freqs, phases)
            ],
            axis=-1,
        )
        dim = height * width * channels
        return cls(
            name=f"posterized-texture-{dim}",
            x0=np.full(dim, 0.5),
            lower=np.zeros(dim),
            upper=np.ones(dim),
            target=target.ravel(),
            levels=levels,
        )

    def shown(self, x: npt.ArrayLike) -> FloatArray:
        """What the pipeline shows of texture(s) ``x`` (..., dim): each value posterized."""
        x = np.clip(np.asarray(x, dtype=np.float64), 0, 1)
        levels: FloatArray = np.minimum(np.floor(x * self.levels), self.levels - 1) / (self.levels - 1)
        return levels

    def __call__(self, x: npt.ArrayLike) -> float:
        return float(np.mean((self.shown(x) - self.target) ** 2))

    def losses(self, X: npt.ArrayLike) -> FloatArray:
        result: FloatArray = np.mean((self.shown(X) - self.target) ** 2, axis=-1)
        return result
