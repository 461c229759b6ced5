"""The scenes' common loss: a rendered image against a target."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from zg_asktell.problems import FloatArray, Problem


@dataclass
class ImageMatch(Problem):
    """Loss: the mean squared error of ``render(x)`` to ``target``. Subclasses render one
    parameter vector (dim,) to an image and a batch (n, dim) to images (n, ...) at once."""

    target: FloatArray = field(repr=False, default_factory=lambda: np.zeros((1, 1)))

    def render(self, x: npt.ArrayLike) -> FloatArray:
        raise NotImplementedError

    def __call__(self, x: npt.ArrayLike) -> float:
        return float(np.mean((self.render(x) - self.target) ** 2))

    def losses(self, X: npt.ArrayLike) -> FloatArray:
        images = self.render(np.atleast_2d(np.asarray(X, dtype=np.float64)))
        result: FloatArray = np.mean((images - self.target) ** 2, axis=tuple(range(1, images.ndim)))
        return result
