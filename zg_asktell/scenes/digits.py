"""Network weights: a digits classifier whose every weight is a parameter, no backpropagation."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from zg_asktell.problems import FloatArray, Problem

HELD_OUT = 360  # the last images of the shuffled set: the test split


def load_digits(seed: int = 0) -> tuple[FloatArray, npt.NDArray[np.intp]]:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, shipped with the package:
    no download), pixels scaled to [0, 1], shuffled by ``seed``: (1797, 64) and labels."""
    from sklearn.datasets import load_digits as bundled

    digits = bundled()
    order = np.random.default_rng(seed).permutation(len(digits.target))
    return digits.data[order] / 16.0, np.asarray(digits.target[order], dtype=np.intp)


@dataclass
class DigitsMLP(Problem):
    """The cross-entropy of a 64-``hidden``-10 ReLU network on the training digits; the
    parameters are all its weights and biases (``75 * hidden + 10``), each layer's weights
    scaled by ``1 / sqrt(fan-in)`` so every parameter lives on the same scale."""

    features: FloatArray = field(repr=False, default_factory=lambda: np.zeros((1, 64)))
    labels: npt.NDArray[np.intp] = field(repr=False, default_factory=lambda: np.zeros(1, np.intp))
    test_features: FloatArray = field(repr=False, default_factory=lambda: np.zeros((1, 64)))
    test_labels: npt.NDArray[np.intp] = field(repr=False, default_factory=lambda: np.zeros(1, np.intp))
    hidden: int = 1

    @classmethod
    def make(cls, hidden: int, seed: int = 0) -> DigitsMLP:
        """The network with ``hidden`` units, uniform random weights in [-1, 1] at the start
        (a standard initialisation after the scaling), the last 360 digits held out."""
        if hidden < 1:
            raise ValueError(f"hidden={hidden} must be at least 1 unit")
        pixels, labels = load_digits(seed)
        dim = 75 * hidden + 10
        return cls(
            name=f"digits-mlp-{dim}",
            x0=np.random.default_rng(seed).uniform(-1, 1, dim),
            lower=np.full(dim, -4.0),
            upper=np.full(dim, 4.0),
            features=pixels[:-HELD_OUT],
            labels=labels[:-HELD_OUT],
            test_features=pixels[-HELD_OUT:],
            test_labels=labels[-HELD_OUT:],
            hidden=hidden,
        )

    def logits(self, X: npt.ArrayLike, features: FloatArray) -> FloatArray:
        """(n, images, 10) class scores of the networks of the rows of ``X`` (n, dim)."""
        w = np.atleast_2d(np.asarray(X, dtype=np.float64))
        h = self.hidden
        w1 = w[:, : 64 * h].reshape(-1, 64, h) / 8.0  # 1 / sqrt(64)
        b1, w2 = w[:, 64 * h : 65 * h], w[:, 65 * h : 75 * h].reshape(-1, h, 10) / math.sqrt(h)
        hidden = np.maximum(features @ w1 + b1[:, None], 0.0)
        scores: FloatArray = hidden @ w2 + w[:, None, 75 * h :]
        return scores

    def losses(self, X: npt.ArrayLike) -> FloatArray:
        scores = self.logits(X, self.features)
        top = scores.max(-1, keepdims=True)
        log_total = top[..., 0] + np.log(np.exp(scores - top).sum(-1))
        chosen = np.take_along_axis(scores, self.labels[None, :, None], -1)[..., 0]
        result: FloatArray = np.mean(log_total - chosen, axis=1)
        return result

    def __call__(self, x: npt.ArrayLike) -> float:
        return float(self.losses(x)[0])

    def accuracy(self, x: npt.ArrayLike) -> float:
        """The fraction of held-out digits the network of ``x`` classifies correctly."""
        predicted = self.logits(x, self.test_features)[0].argmax(-1)
        return float(np.mean(predicted == self.test_labels))
