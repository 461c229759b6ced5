"""
Caustic: a B-spline heightfield shaping refracted light
=======================================================

A sheet of glass whose height is a cubic B-spline surface refracts a parallel beam onto a
screen. Photons are traced through it and counted in pixel bins (hard binning), so the
image, and the loss (its mean squared error to a target caustic), are step functions of
the heights: zero gradient almost everywhere. The target is the caustic of a hidden
surface of five Gaussian bumps and dips; the start is flat glass (a uniform image).
ZeroGrads meets CMA-ES, SPSA, PRDPT-style annealed ES and our ``es`` preset at equal
evaluations.

Run it with ``python examples/plot_caustic.py``: 16 x 16 control heights (256 variables),
3,000 evaluations per optimizer. ``--full`` takes the paper's 32 x 32 (1,024 variables)
and 30,000 evaluations (not timed here; at 3,000 evaluations the 1,024 heights lost only
a fifth of the loss). On this project's machine (2 CPU cores shared with other jobs,
two threads) the reduced run took 80 s of CPU time (45 s of wall time); seed 0
gave (loss: mean squared error of the image; CPU seconds)::

    | optimizer | final loss | / ZeroGrads | / start | CPU s |
    |-----------|------------|-------------|---------|-------|
    | ZeroGrads | 0.0119     | 1.00        | 0.403   | 18    |
    | CMA       | 0.0184     | 1.55        | 0.627   | 24    |
    | SPSA      | 0.0294     | 2.48        | 1.000   | 12    |
    | PRDPT     | 0.00990    | 0.83        | 0.337   | 12    |
    | ZG-es     | 0.0108     | 0.91        | 0.367   | 14    |

ZeroGrads, PRDPT and the ``es`` preset more than halve the loss at this budget, PRDPT a
sixth further than ZeroGrads; CMA-ES follows, and SPSA's probes (0.1 sigma) never move a
photon into another bin, so it stays at the start. The ZeroGrads and ``es`` rows come from
version 0.2's per-coordinate widths (rerun with ``--optimizers ZeroGrads ZG-es``; the
other rows and the CPU seconds from the run before, where ZeroGrads reached 0.393 of the
start and ``es`` 0.383). (Before version 0.2's step-cap rule, a step held at its cap
widening the width: ZeroGrads 0.456 of the start, ``es`` 0.350.)

What differs from the paper (``../shared/seed``): the paper's scene is a physically
based light transport of a real target image, 1,024 heights by default (256 here), and
its optimizers ran 100,000 iterations of 20 evaluations; here refraction is the
small-angle deflection (photon offset proportional to the surface slope), the photons sit
on a regular grid (36 per pixel), the target is generated so that it is reachable, and
the budget is a few thousand.
"""

# %%
# The scene
# ---------
# :class:`zg_asktell.scenes.caustic.Caustic` renders a whole batch of surfaces at once;
# ``_compare`` (next to this file) runs the peers of ``bench/peers.py`` (the examples run
# from a clone of the repository, not from an installed package).
import _compare

from zg_asktell.scenes.caustic import Caustic

args = _compare.parse_args(__doc__)
scene = Caustic.make(controls=32 if args.full else 16, pixels=32, photons_per_pixel=6, seed=args.seed)
start = scene(scene.x0)
budget = args.budget or (30_000 if args.full else 3_000)

# %%
# ZeroGrads and the peers at equal evaluations
# --------------------------------------------
# Every optimizer starts from flat glass with a width of 0.05 (the heights live in
# [-1, 1]) and asks batches of 16 (SPSA asks one at a time: it cannot batch).
runs = _compare.compare(scene, 0.05, budget, 16, optimizers=args.optimizers, seed=args.seed)

# %%
# The caustics found, and the curves
# ----------------------------------
# The target, the images of ZeroGrads' answer and of the best peer's, then the losses.
style = {"cmap": "inferno", "vmin": 0, "vmax": scene.target.max()}
fig = _compare.figure(runs, start, scene.render, scene.target, **style)
_compare.report("caustic", runs, start, fig, args.out)
