"""Where the surrogate's floor comes from: its gradient against reference gradients along training.

``python -m bench.torch_floor [--task bars] [--sigma 0.1] [--lr 0.001] [--renders 12800 51200 ...]
[--seed 0] [--images 128] [--pairs 256] [--option NAME=VALUE ...]``

Trains the encoder of ``bench.amortised`` through :class:`zg_asktell.torch.BlackBox` and, at
each budget, compares on a fixed set of training images the gradients with respect to the
encoder's weights of:

- ``surrogate``: the layer's own gradient, averaged over 64 jitter draws (its expectation);
- ``smoothed-render``: the same gradient from a perfect surrogate, ``2 J^T (f_sigma(p) - t) /
  pixels`` with ``f_sigma`` the Gaussian-smoothed renderer and ``J`` its Jacobian, both
  estimated by ``--pairs`` antithetic renders per image (what the layer would follow with
  no fit error);
- ``es(s)``: the gradient of the smoothed loss ``E ||f(p + s eps) - t||^2 / pixels``, by
  ``--pairs`` antithetic renders per image, at the layer's sigma and at 0.03 and 0.01 (the
  last as the direction of steepest descent of the real loss).

It prints each pair's cosine and the relative error of the first against the second
(``|a - b| / |b|``), the surrogate's error on fresh renders at the current parameters
(relative to their variance) and the layer's coefficient ``c``. Split-half cosines of the
ES references say how much of a difference is their own noise.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from bench.amortised import Task, parse_options, scores
from zg_asktell.torch import BlackBox

JITTERS = 64  # jitter draws averaged into the surrogate's expected gradient


def _antithetic(
    task: Task, p: np.ndarray, targets: np.ndarray, sigma: float, pairs: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per image (n, dim): the smoothed loss's gradient from each half of the pairs, and the
    smoothed-render gradient ``2 J^T (f_sigma - t) / pixels`` from all of them."""
    halves, rendered = np.zeros((2, *p.shape)), np.zeros(p.shape)
    for i, (centre, target) in enumerate(zip(p, targets)):
        eps = rng.standard_normal((pairs, len(centre)))
        plus, minus = task.render(centre + sigma * eps), task.render(centre - sigma * eps)
        difference = ((plus - target) ** 2).mean(1) - ((minus - target) ** 2).mean(1)
        each = difference[:, None] * eps / (2 * sigma)
        halves[0, i], halves[1, i] = each[: pairs // 2].mean(0), each[pairs // 2 :].mean(0)
        a, b = slice(None, pairs // 2), slice(pairs // 2, None)
        # Jacobian and smoothed image from different halves: their product is unbiased
        jacobians = [(plus[h] - minus[h]).T @ eps[h] / (2 * sigma * len(eps[h])) for h in (a, b)]
        means = [(plus[h] + minus[h]).mean(0) / 2 - target for h in (b, a)]
        rendered[i] = sum(j.T @ m for j, m in zip(jacobians, means)) / len(target)
    return halves[0], halves[1], rendered


def _surrogate(
    layer: BlackBox, p: torch.Tensor, targets: torch.Tensor, generator: torch.Generator
) -> tuple[np.ndarray, float]:
    """The layer's expected gradient per image (n, dim), and its relative error on fresh
    renders at ``p`` jittered by its sigma."""
    weights = [w.detach() for w in layer.surrogate.parameters()]
    centre = layer._head(layer._encode(p), weights).detach()
    outer = 2 * (centre - targets) / targets.shape[1]
    total = torch.zeros_like(p)
    for _ in range(JITTERS):
        jittered = (p + layer.sigma * torch.randn(p.shape, generator=generator)).requires_grad_(True)
        predicted = layer._head(layer._encode(jittered), weights)
        (gradient,) = torch.autograd.grad((predicted * outer).sum(), jittered)
        total += gradient
    truth = torch.as_tensor(layer.function(jittered.detach().double().numpy()), dtype=torch.float32)
    error = float(((predicted.detach() - truth) ** 2).sum() / ((truth - truth.mean(0)) ** 2).sum())
    return (layer.coefficient * total / JITTERS).numpy(), error


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def _compared(sigma: float) -> list[tuple[str, str]]:
    """The pairs of gradients compared, each (estimate, reference)."""
    es = f"es({sigma:g})"
    return [
        ("surrogate", "smoothed-render"),
        ("smoothed-render", es),
        ("surrogate", es),
        (es, "es(0.03)"),
        ("surrogate", "es(0.03)"),
        ("surrogate", "es(0.01)"),
        ("es(0.03)", "es(0.01)"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", default="bars")
    parser.add_argument("--sigma", type=float, default=0.1)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--renders", type=int, nargs="+", default=[12800, 51200, 204800, 409600])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--option", nargs="*", default=[], metavar="NAME=VALUE", help="BlackBox options")
    args = parser.parse_args()
    rng = np.random.default_rng(1000 + args.seed)  # the training's own RNGs are left alone
    generator = torch.Generator().manual_seed(1000 + args.seed)
    sigmas = list(dict.fromkeys((args.sigma, 0.03, 0.01)))
    rows: list[list[str]] = []

    def inspect(task: Task, encoder: torch.nn.Module, layer: BlackBox) -> None:
        with torch.no_grad():  # the real loss on 1,024 training images
            train_inputs, train_targets = task.split(torch.arange(1024))
            rendered = task.render(torch.sigmoid(encoder(train_inputs)).double().numpy())
            train_loss = float(((torch.as_tensor(rendered) - train_targets) ** 2).mean())
        inputs, targets = task.split(torch.arange(args.images))
        p = torch.sigmoid(encoder(inputs))
        surrogate, fit_error = _surrogate(layer, p.detach(), targets, generator)
        per_image = {"surrogate": surrogate}
        centres, images = p.detach().double().numpy(), targets.double().numpy()
        for sigma in sigmas:
            a, b, rendered = _antithetic(task, centres, images, sigma, args.pairs, rng)
            per_image |= {f"es({sigma:g})": (a + b) / 2, f"half-a({sigma:g})": a, f"half-b({sigma:g})": b}
            if sigma == args.sigma:
                per_image["smoothed-render"] = rendered
        weights = list(encoder.parameters())

        def through_encoder(g: np.ndarray) -> np.ndarray:
            outer = torch.as_tensor(g, dtype=torch.float32)
            grads = torch.autograd.grad(p, weights, outer, retain_graph=True)
            return torch.cat([w.flatten() for w in grads]).numpy()

        g = {name: through_encoder(each) for name, each in per_image.items()}
        cells = [
            f"{_cosine(g[a], g[b]):.2f} ({np.linalg.norm(g[a] - g[b]) / np.linalg.norm(g[b]):.2f})"
            for a, b in _compared(args.sigma)
        ]
        noise = " ".join(f"{_cosine(g[f'half-a({x:g})'], g[f'half-b({x:g})']):.2f}" for x in sigmas)
        names = ("surrogate", "smoothed-render", *(f"es({x:g})" for x in sigmas))
        norms = " ".join(f"{np.linalg.norm(g[name]):.2e}" for name in names)
        rows.append(
            [f"{train_loss:.5f}", *cells, noise, norms, f"{fit_error:.3f}", f"{layer.coefficient:.2f}"]
        )
        print(" | ".join(rows[-1]), flush=True)

    start = time.perf_counter()
    options = parse_options(args.option)
    held_out, _, _ = scores(
        args.task, "surrogate", args.sigma, args.lr, args.renders, args.seed, options, inspect
    )
    header = ["renders", "held-out", "training", *(f"{a} / {b}" for a, b in _compared(args.sigma))]
    header += ["split-half cosines of " + ", ".join(f"es({x:g})" for x in sigmas), "norms", "fit error", "c"]
    print("\n| " + " | ".join(header) + " |\n" + "|---" * len(header) + "|")
    for renders, score, row in zip(args.renders, held_out, rows):
        print("| " + " | ".join([str(renders), f"{score:.5f}", *row]) + " |")
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
