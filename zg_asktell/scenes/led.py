"""A binary LED display: on/off LEDs blurred onto a screen, squared error to a target."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from zg_asktell.problems import FloatArray
from zg_asktell.scenes._image import ImageMatch


@dataclass
class LedDisplay(ImageMatch):
    """The paper's binary display in shape: a grid of on/off LEDs (on where ``x > 0``)
    blurred onto a screen at twice the resolution, squared error to a target pattern."""

    rows_blur: FloatArray = field(repr=False, default_factory=lambda: np.zeros((1, 1)))
    cols_blur: FloatArray = field(repr=False, default_factory=lambda: np.zeros((1, 1)))

    @classmethod
    def make(cls, dim: int, seed: int = 0) -> LedDisplay:
        """``dim`` LEDs in the squarest grid; the target lights a random third of them at
        random signed strengths (so it is not reachable exactly)."""
        rows = max(r for r in range(1, math.isqrt(dim) + 1) if dim % r == 0)
        problem = cls.blank(rows, dim // rows)
        pattern = np.random.default_rng(seed).uniform(-1, 1, dim) * (np.arange(dim) % 3 == 0)
        problem.target = problem.render(pattern)
        return problem

    @classmethod
    def ring(cls, rows: int, cols: int) -> LedDisplay:
        """A ``rows`` x ``cols`` display whose target is the light of the LEDs on a ring
        around the centre plus its centre dot (reachable: the best loss is 0)."""
        problem = cls.blank(rows, cols)
        y, x = np.meshgrid(np.linspace(-1, 1, rows), np.linspace(-1, 1, cols), indexing="ij")
        radius = np.hypot(x, y)
        on = (np.abs(radius - 0.7) < 0.18) | (radius < 0.25)
        problem.target = problem.render(np.where(on, 1.0, -1.0).ravel())
        return problem

    @classmethod
    def blank(cls, rows: int, cols: int) -> LedDisplay:
        """A display of ``rows`` x ``cols`` LEDs, all off at the start, with no target yet."""
        if rows < 1 or cols < 1:
            raise ValueError(f"an LED display needs rows, cols >= 1, got {rows} x {cols}")
        dim = rows * cols
        return cls(
            name=f"led-{dim}",
            x0=np.full(dim, -0.2),
            lower=np.full(dim, -1.0),
            upper=np.full(dim, 1.0),
            rows_blur=_blur_matrix(rows),
            cols_blur=_blur_matrix(cols),
        )

    def render(self, x: npt.ArrayLike) -> FloatArray:
        """The screen (2 rows, 2 cols) of LED states ``x`` (dim,), or screens (n, 2 rows,
        2 cols) of a batch (n, dim)."""
        on = (np.asarray(x, dtype=np.float64) > 0).astype(np.float64)
        grid = on.reshape(*on.shape[:-1], len(self.rows_blur.T), len(self.cols_blur.T))
        screen: FloatArray = self.rows_blur @ grid @ self.cols_blur.T
        return screen


def _blur_matrix(leds: int) -> FloatArray:
    """(2 leds, leds): each LED's light spread over the screen pixels (Gaussian, 1 pixel)."""
    pixels = (np.arange(2 * leds) + 0.5) / 2
    return np.exp(-0.5 * (pixels[:, None] - (np.arange(leds) + 0.5)[None, :]) ** 2 / 0.5**2)
