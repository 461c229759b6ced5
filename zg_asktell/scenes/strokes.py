"""A generative model through a renderer: a VAE of digits whose decoder emits the control
points of a pen stroke, drawn by a hard-edged stroke renderer (no useful gradient).

Shared by ``examples/plot_stroke_vae.py`` and the benchmark (``bench/amortised.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from zg_asktell.problems import FloatArray

STROKE_POINTS, STROKE_SIZE, STROKE_RADIUS = 6, 16, 0.07
PIXELS = np.stack(np.meshgrid(*[np.arange(STROKE_SIZE)] * 2, indexing="ij"), -1).reshape(-1, 2)
SUBPIXEL_STRATA = (np.stack(np.meshgrid(np.arange(8), np.arange(8)), -1).reshape(-1, 2) + 0.5) / 8  # (64, 2)
HELD_OUT = 256  # the last digits of the shuffled set are held out
KL_WEIGHT = 1 / 256  # a VAE's KL term against the per-pixel mean squared error: per-pixel sums
Render = Callable[[np.ndarray], np.ndarray]  # (n, params) -> (n, pixels)


def strokes(points: np.ndarray, offsets: np.ndarray | None = None) -> FloatArray:
    """(n, 2 * STROKE_POINTS) control points in [0, 1]^2 -> (n, 256) images: a pixel is 1
    where its sample point lies within STROKE_RADIUS of the polyline through the points,
    else 0. The sample point is the pixel's centre, or ``offsets`` ((256, 2) or (n, 256, 2),
    in [0, 1)) inside the pixel."""
    p = np.asarray(points, dtype=np.float64).reshape(len(points), STROKE_POINTS, 1, 1, 2)
    offsets = np.full((1, *PIXELS.shape), 0.5) if offsets is None else offsets.reshape(-1, *PIXELS.shape)
    samples = ((PIXELS + offsets) / STROKE_SIZE)[:, None, None]  # (n or 1, 1, 1, pixels, 2)
    start, segment = p[:, :-1], p[:, 1:] - p[:, :-1]  # (n, segments, 1, 1, 2)
    along = ((samples - start) * segment).sum(-1) / np.maximum((segment**2).sum(-1), 1e-12)
    nearest = start + np.clip(along, 0, 1)[..., None] * segment
    distance2 = ((nearest - samples) ** 2).sum(-1).min(1)  # (n, 1, pixels)
    return np.asarray(distance2[:, 0] < STROKE_RADIUS**2, dtype=np.float64)


def sampled_strokes(seed: int) -> Render:
    """The stroke renderer as a Monte Carlo renderer (a path tracer at 1 sample per pixel):
    each call samples one uniform random point per pixel and image (a generator seeded by
    ``seed``), so every render is a noisy estimate of :func:`converged_strokes`."""
    rng = np.random.default_rng(seed)
    return lambda points: strokes(points, rng.uniform(0, 1, (len(points), *PIXELS.shape)))


def converged_strokes(points: np.ndarray) -> FloatArray:
    """The anti-aliased images: :func:`strokes` averaged over 8x8 stratified sample points."""
    images = [strokes(points, np.broadcast_to(offset, PIXELS.shape)) for offset in SUBPIXEL_STRATA]
    mean: FloatArray = np.mean(images, axis=0)
    return mean


def standardised(x: torch.Tensor, train: int) -> torch.Tensor:
    """``x`` centred and scaled by the mean and spread of its first ``train`` rows."""
    return (x - x[:train].mean(0)) / (x[:train].std(0) + 0.1)


def digits(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's bundled 8x8 digits (1,797, no download), shuffled by ``seed``: the
    encoder's inputs (standardised pixels, (1797, 64)) and the targets (the digit upsampled
    to 16x16 in [0, 1], (1797, 256)); the last ``HELD_OUT`` rows are held out."""
    from sklearn.datasets import load_digits

    pixels = load_digits().data / 16.0
    order = np.random.default_rng(seed).permutation(len(pixels))
    images = torch.as_tensor(pixels[order], dtype=torch.float32)
    upsampled = images.reshape(-1, 8, 1, 8, 1).expand(-1, 8, 2, 8, 2).reshape(-1, 256)
    return standardised(images, len(images) - HELD_OUT), upsampled


class StrokeVAE(torch.nn.Module):
    """A variational autoencoder's encoder and decoder around the stroke renderer: the image
    is encoded to a Gaussian over a latent code, a sample (the mean when not training) is
    decoded to the stroke's control points (logits: ``sigmoid`` maps them into the image);
    ``kl`` holds the last batch's mean KL term."""

    def __init__(self, inputs: int, latent: int = 8) -> None:
        super().__init__()
        self.latent = latent
        self.encode = torch.nn.Sequential(
            torch.nn.Linear(inputs, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2 * latent)
        )
        self.decode = torch.nn.Sequential(
            torch.nn.Linear(latent, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2 * STROKE_POINTS)
        )
        self.kl = torch.zeros(())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, log_variance = self.encode(x).chunk(2, dim=-1)
        self.kl = 0.5 * (mean**2 + log_variance.exp() - 1 - log_variance).sum(-1).mean()
        if not self.training:
            return self.decode(mean)  # type: ignore[no-any-return]
        return self.decode(mean + torch.randn_like(mean) * (0.5 * log_variance).exp())  # type: ignore[no-any-return]


def image_loss(render: Render, params: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Each row's mean squared error between the image ``render`` draws from ``params``
    (no gradient) and its target."""
    rendered = torch.as_tensor(render(params.detach().numpy()), dtype=torch.float32)
    return ((rendered - targets) ** 2).mean(1)


def es_gradient(render: Render, params: torch.Tensor, targets: torch.Tensor, sigma: float) -> torch.Tensor:
    """The per-row antithetic ES estimate (one pair ``p +- sigma * eps`` per row, ``eps``
    from torch's global generator: 2 renders a row) of the gradient of the batch's mean
    :func:`image_loss` with respect to ``params``, to back-propagate into the network."""
    eps = sigma * torch.randn(params.shape)
    q = params.detach()
    differences = image_loss(render, q + eps, targets) - image_loss(render, q - eps, targets)
    return differences[:, None] * eps / (2 * sigma**2) / len(params)
