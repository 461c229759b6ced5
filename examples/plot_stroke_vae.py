"""
A generative model through a renderer: a VAE that draws digits with a pen
=========================================================================

A variational autoencoder learns handwritten digits, but its decoder does not emit
pixels: it emits the 6 control points of a pen stroke, and a stroke renderer draws them.
The renderer is a Monte Carlo one, as a path tracer at one sample per pixel: a pixel is
ink when one random point inside it lies near the polyline, so each render is a noisy,
hard-edged image with no useful gradient. The loss is the squared error between the
drawing and the digit plus the VAE's KL term; the score is the held-out loss of the
converged (anti-aliased) drawing.
The renderer becomes a torch layer with :class:`zg_asktell.torch.BlackBox`, whose
backward pass is the gradient of a surrogate learned from every render so far; the
comparison is per-sample ES, one antithetic pair of renders per image, at equal renders.
The figure shows digits sampled from the latent space, each drawn by the renderer.

Run it with ``python examples/plot_stroke_vae.py`` (64,000 renders per method;
``--full``: 256,000). On this machine (2 CPU cores shared with other jobs, one thread)
the reduced run took 150 s of wall time, 72 s of CPU time in training, and printed the
held-out loss (start 0.220, drawing nothing 0.233; seed 0):

=======  =========  ======  ==============
renders  ZeroGrads  ES      ZeroGrads / ES
=======  =========  ======  ==============
4000     0.1992     0.2050  0.97x
16000    0.1191     0.1391  0.86x
64000    0.0956     0.1139  0.84x
=======  =========  ======  ==============

(seed 1: 0.99x, 1.26x, 0.86x). ZeroGrads' surrogate took 47 s of CPU time, ES 25 s: here
a render costs microseconds, so the surrogate's fit is the cost. Through the hard-edged
renderer (one sample at each pixel's centre, ``strokes``) the two were level in the
benchmark (``python -m bench.amortised --task vae-strokes --renders 8000 32000 --seeds 2``:
1.03x and 1.04x ES at each method's best of the settings tried): the surrogate's edge is
the noise it averages across images.
What differs from the paper (``../shared/seed``): the digits are scikit-learn's bundled
8x8 set upsampled to 16x16, not MNIST (no download); the stroke is a polyline through its
control points, not a spline; the renderer samples one point per pixel; the networks are
small (64 hidden units, 8 latent dimensions); the settings are near the benchmark's best
(``python -m bench.amortised --task vae-strokes-mc``, docs/surrogate.md).
"""

# %%
# The data, the renderer and the VAE
# ----------------------------------
# :mod:`zg_asktell.scenes.strokes` holds the stroke renderer (numpy, a batch of control
# points at once), the digits and the VAE, shared with the benchmark.
import time

import _compare
import matplotlib.pyplot as plt
import numpy as np
import torch

from zg_asktell.scenes.strokes import (
    HELD_OUT,
    KL_WEIGHT,
    STROKE_POINTS,
    StrokeVAE,
    converged_strokes,
    digits,
    es_gradient,
    image_loss,
    sampled_strokes,
)
from zg_asktell.torch import BlackBox

args = _compare.parse_args(__doc__)
torch.set_num_threads(1)
inputs, targets = digits(args.seed)
train_rows = len(inputs) - HELD_OUT
budget = args.budget or (256_000 if args.full else 64_000)
marks = [budget // 16, budget // 4, budget]  # renders at which the held-out loss is measured


def held_out_loss(vae: StrokeVAE) -> float:
    """The held-out digits' mean squared error, each drawn (converged) from its mean code."""
    vae.eval()
    with torch.no_grad():
        params = torch.sigmoid(vae(inputs[train_rows:]))
    vae.train()
    return float(image_loss(converged_strokes, params, targets[train_rows:]).mean())


# %%
# Training through the renderer
# -----------------------------
# The loop is plain torch: a batch of 32 digits, the VAE's control points, the renderer,
# the loss, ``backward()``, an Adam step. With ``BlackBox`` the renderer is a layer (one
# render per image); with ES each image's gradient comes from its own two renders.
# The settings are within 1% of each method's best on the benchmark's grid at 64,000 renders.
def train(method: str, sigma: float, lr: float) -> tuple[StrokeVAE, _compare.Run]:
    torch.manual_seed(args.seed)
    vae = StrokeVAE(inputs.shape[1])
    optimizer = torch.optim.Adam(vae.parameters(), lr=lr)
    render = sampled_strokes(args.seed + 1)  # a fresh random sample point per pixel and call
    renderer = BlackBox(render, 2 * STROKE_POINTS, targets.shape[1], sigma=sigma, seed=args.seed)
    losses, clock, cpu, done = [], time.perf_counter(), time.process_time(), 0
    while done < budget:
        rows = torch.randint(train_rows, (32,))
        params = torch.sigmoid(vae(inputs[rows]))  # control points in [0, 1]^2
        optimizer.zero_grad()
        if method == "ZeroGrads":
            drawn = renderer(params)  # the real renders, its gradient the surrogate's
            (((drawn - targets[rows]) ** 2).mean() + KL_WEIGHT * vae.kl).backward()
            done += len(rows)
        else:
            gradient = es_gradient(render, params, targets[rows], sigma)
            torch.autograd.backward([params, KL_WEIGHT * vae.kl], [gradient, torch.ones(())])
            done += 2 * len(rows)
        optimizer.step()
        if len(losses) < len(marks) and done >= marks[len(losses)]:
            losses.append(held_out_loss(vae))
    run = _compare.Run(
        optimizer=method,
        evaluations=marks,
        losses=losses,
        seconds=time.perf_counter() - clock,
        cpu_seconds=time.process_time() - cpu,
        peak_mb=0.0,
        note=f"sigma {sigma:g}, Adam step {lr:g}",
        answer=np.zeros(0),
    )
    return vae, run


torch.manual_seed(args.seed)
start = held_out_loss(StrokeVAE(inputs.shape[1]))
trained = {"ZeroGrads": train("ZeroGrads", 0.05, 3e-3), "ES": train("ES", 0.03, 3e-3)}
runs = {name: run for name, (_, run) in trained.items()}
print(f"held-out loss: start {start:.4f}, drawing nothing {float((targets[train_rows:] ** 2).mean()):.4f}")
print("| renders | " + " | ".join(runs) + " | ZeroGrads / ES |\n|---|---|---|---|")
for k, mark in enumerate(marks):
    zerograds, es = runs["ZeroGrads"].losses[k], runs["ES"].losses[k]
    print(f"| {mark} | {zerograds:.4f} | {es:.4f} | {zerograds / es:.2f}x |")

# %%
# Samples from the latent space, and held-out digits redrawn
# ----------------------------------------------------------
# Codes drawn from the prior, decoded to control points, drawn by the renderer.
vae = trained["ZeroGrads"][0].eval()
with torch.no_grad():
    codes = torch.randn(36, vae.latent, generator=torch.Generator().manual_seed(args.seed))
    samples = converged_strokes(torch.sigmoid(vae.decode(codes)).numpy())
    shown = slice(train_rows, train_rows + 8)
    redrawn = [targets[shown].numpy()]
    redrawn += [converged_strokes(torch.sigmoid(m(inputs[shown])).numpy()) for m, _ in trained.values()]


def mosaic(images: np.ndarray, columns: int) -> np.ndarray:
    """(n, 256) images as one picture of ``columns`` 16x16 tiles per row."""
    tiles = np.pad(images.reshape(-1, columns, 16, 16), ((0, 0), (0, 0), (1, 1), (1, 1)))
    return tiles.transpose(0, 2, 1, 3).reshape(len(tiles) * 18, columns * 18)


fig, (left, middle, right) = plt.subplots(1, 3, figsize=(13, 4), width_ratios=[1, 1.5, 1.1])
left.imshow(mosaic(samples, 6), cmap="gray_r")
left.set(title="samples from the latent space (ZeroGrads)", xticks=[], yticks=[])
middle.imshow(mosaic(np.concatenate(redrawn), 8), cmap="gray_r")
middle.set(title="held-out digits; drawn: ZeroGrads, ES", xticks=[], yticks=[])
_compare.plot_curves(right, runs, start)
right.set(xlabel="renders", ylabel="held-out loss")
fig.tight_layout()
_compare.report("stroke_vae", runs, start, fig, args.out)
