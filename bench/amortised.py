"""Amortisation: training a network through a non-differentiable renderer (docs/surrogate.md).

``python -m bench.amortised [--task bars|bars-large|discs|discs-mc|strokes|strokes-mc|vae-strokes|
vae-strokes-mc] [--renders 4000 16000 64000] [--seeds 3] [--settings METHOD:SIGMA:STEP ...]
[--option NAME=VALUE ...] [--jobs 2] [--plot PATH]``

An encoder maps each target image to the parameters of a renderer with no useful gradient;
the loss is the squared error between the image rendered from those parameters and the
target. Eight tasks:

- ``bars``: an MLP encoder (576-64-6) maps each 24x24 image of one hard-edged rotated bar
  to the bar's 6 parameters (``bars``); chosen, with its settings, before any tuning of the
  corrected gradient, as the check on a task none of the defaults were chosen on;
- ``bars-large``: the same with 32,768 images instead of 2,048 (256 held out in both), so
  that at long budgets the encoder does not overfit (docs/torch.md);
- ``discs``: a linear encoder (sigmoid outputs) maps each 16x16x3 image of one disc, drawn
  by the hard-edged ``DiscRaster``, to the disc's 6 parameters;
- ``discs-mc``: the same through a Monte Carlo renderer (``MonteCarloRaster``: one random
  sub-pixel sample per pixel and render, as a path tracer at 1 sample per pixel), so every
  render is noisy; targets and score use the converged, anti-aliased image;
- ``strokes``: an autoencoder of handwritten digits (sklearn's bundled 8x8 set), the
  paper's VAE experiment in shape: an MLP encoder maps each digit to the 6 control points
  of a pen stroke, which a hard-edged stroke renderer draws on 16x16 pixels (a pixel is ink
  where its centre lies within a fixed radius of the polyline), compared with the digit
  upsampled to 16x16;
- ``strokes-mc``: the same through a Monte Carlo stroke renderer (one random sample point
  per pixel and render), scored on the converged image;
- ``vae-strokes``: ``strokes`` with a variational autoencoder (``StrokeVAE``: latent
  sampling and a KL term, as the paper's VAE experiment), scored with each image's mean
  code; ``examples/plot_stroke_vae.py`` trains it (the renderer, the digits and the VAE
  live in :mod:`zg_asktell.scenes.strokes`);
- ``vae-strokes-mc``: ``vae-strokes`` through the Monte Carlo stroke renderer.

The gradient with respect to each image's parameters is estimated, then back-propagated
through the encoder (exactly, by autograd):

- ``es``: per image, one antithetic pair ``p +- sigma*eps`` (2 renders per image and step);
- ``surrogate``: :class:`zg_asktell.torch.BlackBox` around the renderer, as shipped
  (``correction=0``): one render per image at ``p + sigma*eps``; a warm-started MLP fitted
  online to the (parameters, rendered image) pairs of every image seen recently (a
  learned, Gaussian smoothed renderer shared by all images, no pre-training) supplies the
  gradient;
- ``corrected``: ``BlackBox(correction=1)``: the surrogate's gradient plus the one-sample
  ES estimate of what it did not predict, unbiased.

All take Adam steps on the encoder; each method's step size and sigma are swept (the
task's ``GRIDS``, or ``--settings``) and the table shows every setting; the score is the
true loss on held-out images at equal numbers of renders, and a second table gives the loss
on 256 training images (the loss the estimators descend: the held-out loss adds how the
encoder generalises). ``--jobs`` runs in parallel. ``--option`` passes options to
``BlackBox`` (the tables in docs/surrogate.md before docs/torch.md were measured with the
former ``LearnedSmoothing``: ``fit_batch=256 fit_steps=2``).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from bench.problems import MonteCarloRaster
from zg_asktell.problems import DiscRaster
from zg_asktell.scenes.strokes import (
    HELD_OUT,
    KL_WEIGHT,
    STROKE_POINTS,
    Render,
    StrokeVAE,
    converged_strokes,
    digits,
    es_gradient,
    image_loss,
    sampled_strokes,
    standardised,
    strokes,
)
from zg_asktell.torch import BlackBox

BATCH = 32  # images per encoder step
METHODS = ("es", "surrogate", "corrected")
CORRECTION = {"surrogate": 0.0, "corrected": 1.0}


@dataclass(frozen=True)
class Task:
    """Images to encode (encoder inputs and the targets renders are compared with), the
    renderer and an encoder factory."""

    render: Render
    inputs: torch.Tensor
    targets: torch.Tensor
    held_out: int  # the last rows are the held-out images
    encoder: Callable[[int], torch.nn.Module]  # input width -> module ending in parameters
    params: int
    scored: Render | None = None  # what the score renders with, when not ``render`` (noise-free)

    def split(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inputs[rows], self.targets[rows]


def _row_images(image: Callable[[np.ndarray], np.ndarray]) -> Render:
    """A renderer of one parameter vector to one image, applied to each row, images flattened."""
    return lambda p: np.stack([image(q).ravel() for q in p])


def _disc_params(seed: int) -> np.ndarray:
    """2,048 discs (centre, radius, colour) that lie well inside a 16x16 image."""
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.uniform(0.3, 0.7, (2048, 2)), rng.uniform(0.6, 1.0, (2048, 4))])


def _discs(seed: int) -> Task:
    render = _row_images(DiscRaster.make(1, seed=seed, size=16).render)
    images = torch.as_tensor(render(_disc_params(seed)), dtype=torch.float32)
    return Task(render, standardised(images, 1792), images, 256, lambda n: torch.nn.Linear(n, 6), 6)


def _discs_mc(seed: int) -> Task:
    """``discs`` through a Monte Carlo renderer: one random sub-pixel sample per pixel and
    render, so each render is a noisy estimate of the anti-aliased image it is scored with."""
    raster = MonteCarloRaster.noisy(1, samples=1, seed=seed, size=16)
    render, converged = _row_images(raster.sampled), _row_images(raster.converged)
    images = torch.as_tensor(converged(_disc_params(seed)), dtype=torch.float32)
    inputs = standardised(images, 1792)
    return Task(render, inputs, images, 256, lambda n: torch.nn.Linear(n, 6), 6, converged)


def _strokes(seed: int) -> Task:
    inputs, targets = digits(seed)

    def encoder(n: int) -> torch.nn.Module:
        return torch.nn.Sequential(
            torch.nn.Linear(n, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2 * STROKE_POINTS)
        )

    return Task(strokes, inputs, targets, HELD_OUT, encoder, 2 * STROKE_POINTS)


def _strokes_mc(seed: int) -> Task:
    """``strokes`` through a Monte Carlo renderer: one random sample point per pixel and
    render; the score uses the converged (8x8 stratified, anti-aliased) image."""
    return dataclasses.replace(_strokes(seed), render=sampled_strokes(seed + 1), scored=converged_strokes)


def _vae_strokes(seed: int) -> Task:
    """``strokes`` with a VAE (latent sampling and a KL term) in place of the autoencoder."""
    return dataclasses.replace(_strokes(seed), encoder=StrokeVAE)


def _vae_strokes_mc(seed: int) -> Task:
    """``strokes-mc`` with a VAE (latent sampling and a KL term) in place of the autoencoder."""
    return dataclasses.replace(_strokes_mc(seed), encoder=StrokeVAE)


BAR_SIZE = 24
_BAR_PIXELS = np.stack(np.meshgrid(*[np.arange(BAR_SIZE)] * 2, indexing="ij"), -1).reshape(-1, 2) + 0.5
_BAR_PIXELS /= BAR_SIZE  # pixel centres in [0, 1]^2


def bars(params: np.ndarray) -> np.ndarray:
    """(n, 6) parameters in [0, 1] -> (n, 576) images of one hard-edged rotated bar: centre
    (0.2-0.8 of the image), angle (0-180 degrees), length (0.2-0.8), thickness (0.04-0.2)
    and ink (0.3-1); a pixel takes the ink where its centre lies inside the bar, else 0."""
    p = np.asarray(params, dtype=np.float64)
    centre, angle = 0.2 + 0.6 * p[:, None, :2], np.pi * p[:, 2:3]
    length, thickness, ink = 0.2 + 0.6 * p[:, 3:4], 0.04 + 0.16 * p[:, 4:5], 0.3 + 0.7 * p[:, 5:6]
    offset = _BAR_PIXELS - centre  # (n, pixels, 2)
    along = offset[..., 0] * np.cos(angle) + offset[..., 1] * np.sin(angle)
    across = offset[..., 1] * np.cos(angle) - offset[..., 0] * np.sin(angle)
    return np.where((np.abs(along) < length / 2) & (np.abs(across) < thickness / 2), ink, 0.0)


def _bars(seed: int, images: int = 2048) -> Task:
    """An MLP encoder (576-64-6) of 24x24 images of one rotated bar, through ``bars``; the
    last 256 of ``images`` are held out."""
    truth = np.random.default_rng(seed).uniform(0.1, 0.9, (images, 6))
    rendered = torch.as_tensor(bars(truth), dtype=torch.float32)

    def encoder(n: int) -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Linear(n, 64), torch.nn.ReLU(), torch.nn.Linear(64, 6))

    return Task(bars, standardised(rendered, images - 256), rendered, 256, encoder, 6)


TASKS: dict[str, Callable[[int], Task]] = {
    "bars": _bars,
    "bars-large": lambda seed: _bars(seed, 32768),
    "discs": _discs,
    "discs-mc": _discs_mc,
    "strokes": _strokes,
    "strokes-mc": _strokes_mc,
    "vae-strokes": _vae_strokes,
    "vae-strokes-mc": _vae_strokes_mc,
}
# Each task's (sigma, Adam step) settings per method: each method's best and its neighbours
# (strokes: from a 2-seed development sweep; an Adam step of 0.01 left the disc encoder
# drawing nothing for both methods). The Monte Carlo and VAE variants reuse their base
# task's grid; every best setting on a grid edge was checked beyond it (docs/surrogate.md).
_DISC_GRID = {
    "es": [(s, lr) for s in (0.03, 0.05, 0.1) for lr in (3e-4, 1e-3, 3e-3)],
    "surrogate": [(s, lr) for s in (0.05, 0.1, 0.15) for lr in (3e-4, 1e-3, 3e-3)],
}
_STROKE_GRID = {
    "es": [(s, lr) for s in (0.02, 0.03, 0.05) for lr in (3e-3, 1e-2)],
    "surrogate": [(s, lr) for s in (0.05, 0.1, 0.15) for lr in (1e-3, 3e-3)],
}
for _grid in (_DISC_GRID, _STROKE_GRID):  # the corrected gradient sweeps the surrogate's grid
    _grid["corrected"] = _grid["surrogate"]
GRIDS: dict[str, dict[str, list[tuple[float, float]]]] = {
    name: _DISC_GRID if name.startswith(("discs", "bars")) else _STROKE_GRID for name in TASKS
}


def train(
    task_name: str,
    method: str,
    sigma: float,
    lr: float,
    renders: list[int],
    seed: int,
    options: dict[str, float] | None = None,
) -> tuple[list[float], float]:
    """Held-out loss after each of ``renders`` renders (ascending), and the seconds spent
    training (renders, estimator and encoder steps; building the task and scoring excluded).
    ``options`` go to the surrogate's :class:`BlackBox`."""
    held_out, _, seconds = scores(task_name, method, sigma, lr, renders, seed, options)
    return held_out, seconds


def scores(
    task_name: str,
    method: str,
    sigma: float,
    lr: float,
    renders: list[int],
    seed: int,
    options: dict[str, float] | None = None,
    inspect: Callable[[Task, torch.nn.Module, BlackBox], None] | None = None,
) -> tuple[list[float], list[float], float]:
    """As :func:`train`, with the loss on the first 256 training images after the held-out
    loss (the objective the estimators descend, where the held-out loss adds the encoder's
    generalisation); ``inspect`` is called with the task, the encoder and the layer at each
    of ``renders`` (bench.torch_floor)."""
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    task = TASKS[task_name](seed)
    train_rows = len(task.inputs) - task.held_out
    encoder = task.encoder(task.inputs.shape[1])
    optimizer = torch.optim.Adam(encoder.parameters(), lr=lr)
    options = {"correction": CORRECTION.get(method, 1.0), **(options or {})}
    smoothed = BlackBox(task.render, task.params, task.targets.shape[1], sigma=sigma, seed=seed, **options)

    scored = {
        "held-out": task.split(torch.arange(train_rows, len(task.inputs))),
        "training": task.split(torch.arange(task.held_out)),
    }
    losses: dict[str, list[float]] = {name: [] for name in scored}
    done, seconds = 0, 0.0
    while len(losses["held-out"]) < len(renders):
        start = time.perf_counter()
        inputs, targets = task.split(torch.randint(train_rows, (BATCH,)))
        p = torch.sigmoid(encoder(inputs))
        prior = [KL_WEIGHT * encoder.kl] if isinstance(encoder, StrokeVAE) else []
        optimizer.zero_grad()
        if method == "es":
            grad = es_gradient(task.render, p, targets, sigma)
            torch.autograd.backward([p, *prior], [grad, *[torch.ones(())] * len(prior)])
            done += 2 * BATCH
        else:
            (((smoothed(p) - targets) ** 2).mean(1).mean() + sum(prior)).backward()
            done += BATCH
        optimizer.step()
        seconds += time.perf_counter() - start
        while len(losses["held-out"]) < len(renders) and done >= renders[len(losses["held-out"])]:
            encoder.eval()  # a VAE decodes its mean code
            with torch.no_grad():
                for name, (test_inputs, test_targets) in scored.items():
                    test_params = torch.sigmoid(encoder(test_inputs))
                    loss = image_loss(task.scored or task.render, test_params, test_targets)
                    losses[name].append(float(loss.mean()))
            if inspect is not None:
                inspect(task, encoder, smoothed)
            encoder.train()
    return losses["held-out"], losses["training"], seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", choices=sorted(TASKS), default="discs")
    parser.add_argument("--renders", type=int, nargs="+", default=[4000, 16000, 64000])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--plot", metavar="PATH", help="PNG of the held-out loss against renders")
    parser.add_argument(
        "--settings", nargs="*", metavar="METHOD:SIGMA:STEP", help="run these instead of the grid"
    )
    parser.add_argument("--option", nargs="*", default=[], metavar="NAME=VALUE", help="BlackBox options")
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel (processes)")
    args = parser.parse_args()
    options = parse_options(args.option)
    renders, start = sorted(args.renders), time.perf_counter()
    settings = [(method, *setting) for method in METHODS for setting in GRIDS[args.task][method]]
    if args.settings:
        settings = [(m, float(s), float(lr)) for m, s, lr in (text.split(":") for text in args.settings)]
    methods = [method for method in METHODS if _rows(settings, method)]
    jobs = [
        (args.task, *setting, renders, seed, options)
        for setting, seed in itertools.product(settings, range(args.seeds))
    ]
    with ProcessPoolExecutor(args.jobs) as pool:
        held_out, training, seconds = zip(*pool.map(scores, *zip(*jobs)))
    shape = (len(settings), args.seeds, len(renders))
    medians = np.median(np.array(held_out).reshape(shape), axis=1)
    run_seconds = np.median(np.array(seconds).reshape(len(settings), args.seeds), axis=1)
    command = f"python -m bench.amortised --task {args.task} --renders {' '.join(map(str, renders))}"
    for name, values in (("seeds", [str(args.seeds)]), ("settings", args.settings), ("option", args.option)):
        command += f" --{name} {' '.join(values)}" if values else ""
    print(f"`{command}`: median held-out loss over seeds (start: an untrained encoder)\n")
    _table(renders, settings, medians)
    print("\nThe loss on the first 256 training images (what the estimators descend; median over seeds):\n")
    _table(renders, settings, np.median(np.array(training).reshape(shape), axis=1))
    times = {m: run_seconds[_best_at_last(settings, medians, m)] for m in methods}
    print(
        f"\nTraining time of one run to {renders[-1]} renders at each method's best setting there "
        "(median over seeds; renders, estimator and encoder steps): "
        + ", ".join(f"{m} {t:.1f} s" for m, t in times.items())
    )
    print(f"\n{time.perf_counter() - start:.0f} s on 2 cores")
    if args.plot:
        _plot(renders, settings, medians, args.plot)


def _table(renders: list[int], settings: list[tuple[str, float, float]], medians: np.ndarray) -> None:
    """Print each setting's row of ``medians`` and each method's best-against-es ratio."""
    print("| method | sigma | Adam step | " + " | ".join(f"{r} renders" for r in renders) + " |")
    print("|---|---|---|" + "---|" * len(renders))
    for (method, sigma, lr), row in zip(settings, medians):
        print(f"| {method} | {sigma:g} | {lr:g} | " + " | ".join(f"{v:.4g}" for v in row) + " |")
    methods = [method for method in METHODS if _rows(settings, method)]
    best = {method: medians[_rows(settings, method)].min(0) for method in methods}  # per column
    for method in methods[1:] if "es" in best else []:
        ratios = " | ".join(f"{r:.2f}x" for r in best[method] / best["es"])
        print(f"| {method} / es, each at its best setting per column | | | {ratios} |")


def parse_options(pairs: list[str]) -> dict[str, float]:
    """``["fit_batch=64", "correction=0.5"]`` -> ``{"fit_batch": 64, "correction": 0.5}``."""
    options = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        options[name] = float(value) if any(c in value for c in ".e") else int(value)
    return options


def _rows(settings: list[tuple[str, float, float]], method: str) -> list[int]:
    """Indices of ``method``'s settings."""
    return [k for k, setting in enumerate(settings) if setting[0] == method]


def _best_at_last(settings: list[tuple[str, float, float]], medians: np.ndarray, method: str) -> int:
    """Index of ``method``'s setting with the lowest median loss at the largest budget."""
    return min(_rows(settings, method), key=lambda k: medians[k, -1])


def _plot(
    renders: list[int], settings: list[tuple[str, float, float]], medians: np.ndarray, path: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    figure, ax = plt.subplots(figsize=(5, 3.4))
    for method in dict.fromkeys(setting[0] for setting in settings):
        k = _best_at_last(settings, medians, method)
        label = f"{method} (sigma {settings[k][1]:g}, Adam step {settings[k][2]:g})"
        ax.plot(renders, medians[k], marker="o", label=label)
    ax.set(xscale="log", yscale="log", xlabel="renders", ylabel="median held-out loss")
    ax.set_xticks(renders, [f"{r:,}" for r in renders])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
