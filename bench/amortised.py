"""Amortisation: training a network through a non-differentiable renderer (docs/surrogate.md).

``python -m bench.amortised [--renders 4000 16000 64000] [--seeds 3] [--plot PATH]``

An encoder (linear, sigmoid outputs) maps each target image (16x16x3, one disc drawn by the
hard-edged ``DiscRaster``) to the 6 parameters of a disc; the loss is the squared error
between the disc rendered from those parameters and the target. The renderer has no useful
gradient, so the gradient with respect to the parameters is estimated, then back-propagated
through the encoder (exactly, by autograd):

- ``es``: per image, one antithetic pair ``p +- sigma*eps`` (2 renders per image and step);
- ``surrogate``: :class:`zg_asktell.amortised.LearnedSmoothing` around the renderer: one
  render per image at ``p + sigma*eps``; a warm-started MLP fitted online to the
  (parameters, rendered image) pairs of every image seen recently (a learned, Gaussian
  smoothed renderer shared by all images, no pre-training) supplies the gradient.

Both take Adam steps on the encoder with the same step size, the best of a small sweep
each; the score is the true loss on 256 held-out images at equal numbers of renders.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch

from zg_asktell.amortised import LearnedSmoothing
from zg_asktell.problems import DiscRaster

SIZE, SIGMA, BATCH = 16, 0.1, 32
STEPS_LR = (3e-4, 1e-3, 3e-3, 1e-2)  # Adam step sizes swept for each method


def _data(seed: int) -> tuple[DiscRaster, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    renderer = DiscRaster.make(1, seed=seed, size=SIZE)
    rng = np.random.default_rng(seed)
    params = np.column_stack([rng.uniform(0.3, 0.7, (2048, 2)), rng.uniform(0.6, 1.0, (2048, 4))])
    images = np.stack([renderer.render(p).ravel() for p in params])
    tensor = torch.as_tensor(images, dtype=torch.float32)
    return renderer, tensor[:1792], tensor[1792:], tensor.mean(0), tensor.std(0) + 0.1


def train(method: str, lr: float, renders: list[int], seed: int) -> list[float]:
    """Held-out loss after each of ``renders`` renders (ascending)."""
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    renderer, train_images, test_images, mean, std = _data(seed)
    encoder = torch.nn.Linear(train_images.shape[1], 6)
    optimizer = torch.optim.Adam(encoder.parameters(), lr=lr)

    def render_rows(p: np.ndarray) -> np.ndarray:
        return np.stack([renderer.render(q).ravel() for q in p])

    smoothed = LearnedSmoothing(render_rows, 6, train_images.shape[1], sigma=SIGMA, seed=seed)

    def encode(images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(encoder((images - mean) / std))

    def loss(p: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        rendered = torch.as_tensor(render_rows(p.detach().numpy()), dtype=torch.float32)
        return ((rendered - images) ** 2).mean(1)

    scores: list[float] = []
    done = 0
    while len(scores) < len(renders):
        images = train_images[torch.randint(len(train_images), (BATCH,))]
        p = encode(images)
        if method == "es":
            eps = SIGMA * torch.randn(p.shape)
            q = p.detach()
            differences = loss(q + eps, images) - loss(q - eps, images)
            optimizer.zero_grad()
            torch.autograd.backward([p], [differences[:, None] * eps / (2 * SIGMA**2) / BATCH])
            done += 2 * BATCH
        else:
            optimizer.zero_grad()
            ((smoothed(p) - images) ** 2).mean(1).mean().backward()
            done += BATCH
        optimizer.step()
        while len(scores) < len(renders) and done >= renders[len(scores)]:
            with torch.no_grad():
                scores.append(float(loss(encode(test_images), test_images).mean()))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--renders", type=int, nargs="+", default=[4000, 16000, 64000])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--plot", metavar="PATH", help="PNG of the held-out loss against renders")
    args = parser.parse_args()
    renders, start = sorted(args.renders), time.perf_counter()
    jobs = [(m, lr, renders, s) for m in ("es", "surrogate") for lr in STEPS_LR for s in range(args.seeds)]
    with ProcessPoolExecutor(2) as pool:
        results = list(pool.map(train, *zip(*jobs)))
    medians = np.median(np.array(results).reshape(2, len(STEPS_LR), args.seeds, len(renders)), axis=2)
    print(
        f"`python -m bench.amortised --renders {' '.join(map(str, renders))} --seeds {args.seeds}`: "
        "median held-out loss over seeds (start: an untrained encoder)\n"
    )
    print("| method | Adam step | " + " | ".join(f"{r} renders" for r in renders) + " |")
    print("|---|---|" + "---|" * len(renders))
    for m, method in enumerate(("es", "surrogate")):
        for k, lr in enumerate(STEPS_LR):
            print(f"| {method} | {lr:g} | " + " | ".join(f"{v:.4g}" for v in medians[m, k]) + " |")
    print(f"\n{time.perf_counter() - start:.0f} s on 2 cores")
    if args.plot:
        _plot(renders, medians, args.plot)


def _plot(renders: list[int], medians: np.ndarray, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(5, 3.4))
    for m, method in enumerate(("es", "surrogate")):
        best = int(np.argmin(medians[m, :, -1]))
        ax.plot(renders, medians[m, best], marker="o", label=f"{method} (Adam step {STEPS_LR[best]:g})")
    ax.set(xscale="log", yscale="log", xlabel="renders", ylabel="median held-out loss")
    ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
