"""A caustic: light refracted by a B-spline heightfield, photons binned into pixels."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from zg_asktell.problems import FloatArray
from zg_asktell.scenes._image import ImageMatch


def spline_bases(controls: int, samples: int) -> tuple[FloatArray, FloatArray]:
    """The uniform cubic B-spline's basis (samples, controls) at ``samples`` points evenly
    inside [0, 1], and its derivative along [0, 1]."""
    if controls < 4:
        raise ValueError(f"a cubic B-spline needs at least 4 control points, got {controls}")
    spans = controls - 3
    t = (np.arange(samples) + 0.5) / samples * spans
    first = np.minimum(np.floor(t).astype(np.intp), spans - 1)
    s = (t - first)[:, None]
    weights = np.hstack([(1 - s) ** 3, 3 * s**3 - 6 * s**2 + 4, -3 * s**3 + 3 * s**2 + 3 * s + 1, s**3]) / 6
    slopes = np.hstack([-((1 - s) ** 2), 3 * s**2 - 4 * s, -3 * s**2 + 2 * s + 1, s**2]) / 2 * spans
    basis, derivative = np.zeros((samples, controls)), np.zeros((samples, controls))
    rows = np.arange(samples)[:, None]
    columns = first[:, None] + np.arange(4)
    basis[rows, columns] = weights
    derivative[rows, columns] = slopes
    return basis, derivative


@dataclass
class Caustic(ImageMatch):
    """A glass heightfield over the unit square, parametrised by ``controls`` x ``controls``
    cubic B-spline control heights, refracts a parallel beam straight down onto a screen.

    A regular grid of photons, each deflected by ``deflection`` times the surface's slope
    where it enters (the small-angle refraction, then the flight to the screen), lands in
    one of ``pixels`` x ``pixels`` bins (hard binning: the image is a step function of the
    heights). The image is the count per bin over the count a flat surface puts there; the
    loss is its mean squared error to ``target``, the caustic of a hidden heightfield of a
    few Gaussian bumps (so the best loss is 0). Photons that leave the screen are lost.
    """

    basis: FloatArray = field(repr=False, default_factory=lambda: np.zeros((1, 1)))
    slope: FloatArray = field(repr=False, default_factory=lambda: np.zeros((1, 1)))
    hidden: FloatArray = field(repr=False, default_factory=lambda: np.zeros(1))
    pixels: int = 32
    deflection: float = 0.01

    @classmethod
    def make(cls, controls: int = 32, pixels: int = 32, photons_per_pixel: int = 3, seed: int = 0) -> Caustic:
        """A ``controls``^2-variable caustic on ``pixels``^2 bins, (``photons_per_pixel``
        ``pixels``)^2 photons, starting flat (all heights 0, a uniform image)."""
        if pixels < 2 or photons_per_pixel < 1:
            raise ValueError(f"need pixels >= 2, photons_per_pixel >= 1; got {pixels}, {photons_per_pixel}")
        basis, slope = spline_bases(controls, pixels * photons_per_pixel)
        dim = controls * controls
        problem = cls(
            name=f"caustic-{dim}",
            x0=np.zeros(dim),
            lower=np.full(dim, -1.0),
            upper=np.full(dim, 1.0),
            basis=basis,
            slope=slope,
            pixels=pixels,
        )
        problem.hidden = _bumps(controls, np.random.default_rng(seed))
        problem.target = problem.render(problem.hidden)
        return problem

    def render(self, x: npt.ArrayLike) -> FloatArray:
        """The image (pixels, pixels) of heights ``x`` (dim,), or images (n, pixels, pixels)
        of a batch (n, dim): photon counts relative to a flat surface's."""
        heights = np.asarray(x, dtype=np.float64)
        batch = heights.reshape(-1, len(self.basis.T), len(self.basis.T))
        along_x = self.basis @ batch @ self.slope.T  # slope of every photon's entry point
        along_y = self.slope @ batch @ self.basis.T
        grid = (np.arange(len(self.basis)) + 0.5) / len(self.basis)
        column = np.floor((grid[None, None, :] - self.deflection * along_x) * self.pixels).astype(np.intp)
        row = np.floor((grid[None, :, None] - self.deflection * along_y) * self.pixels).astype(np.intp)
        on_screen = (column >= 0) & (column < self.pixels) & (row >= 0) & (row < self.pixels)
        image = np.arange(len(batch))[:, None, None] * self.pixels**2
        bins = (image + row * self.pixels + column)[on_screen]
        counts = np.bincount(bins, minlength=len(batch) * self.pixels**2)
        flat = (len(self.basis) / self.pixels) ** 2
        images = counts.reshape(len(batch), self.pixels, self.pixels) / flat
        return images.reshape(heights.shape[:-1] + (self.pixels, self.pixels))


def _bumps(controls: int, rng: np.random.Generator, count: int = 5) -> FloatArray:
    """Control heights of ``count`` Gaussian bumps and dips (lenses) at random places."""
    position = np.linspace(0, 1, controls)
    y, x = np.meshgrid(position, position, indexing="ij")
    heights = np.zeros((controls, controls))
    for _ in range(count):
        cx, cy = rng.uniform(0.2, 0.8, 2)
        width = rng.uniform(0.08, 0.15)
        amplitude = rng.choice([-1, 1]) * rng.uniform(0.3, 0.5)
        heights += amplitude * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * width**2))
    return np.clip(heights, -1, 1).ravel()
