"""
Binary LED display: on/off parameters by rounding
=================================================

336 LEDs (16 x 21, the paper's count) are each on or off; their light, blurred onto a
screen of twice the resolution, should match a target: a ring and a dot. Each parameter
is a real number in [-1, 1] and the LED is on where it is positive, so the loss is a step
function of every parameter: its gradient is zero wherever it exists. ZeroGrads meets
CMA-ES, SPSA, PRDPT-style annealed ES and our ``es`` preset at equal evaluations.

Run it with ``python examples/plot_led.py`` (2,000 evaluations per optimizer; ``--full``:
the paper's 5,000, i.e. 2,500 iterations of 2). On this project's machine (2 CPU cores
shared with other jobs, one thread) the reduced run took 13 s of CPU time (about a minute
of wall time); seed 0 gave (loss: mean squared error of the screen; CPU seconds)::

    | optimizer | final loss | / ZeroGrads | / start | CPU s |
    |-----------|------------|-------------|---------|-------|
    | ZeroGrads | 0.0539     | 1.00        | 0.066   | 4     |
    | CMA       | 0.338      | 6.27        | 0.415   | 7     |
    | SPSA      | 0.813      | 15.1        | 1.000   | 2     |
    | PRDPT     | 0.0622     | 1.15        | 0.077   | 0.1   |
    | ZG-es     | 0.0652     | 1.21        | 0.080   | 0.5   |

ZeroGrads, PRDPT and the ``es`` preset are close, far ahead of CMA-ES; Nevergrad's SPSA
probes at 0.1 sigma, a step too small to switch any LED, so it never leaves the start.
The ZeroGrads and ``es`` rows come from version 0.2's per-coordinate widths (rerun with
``--optimizers ZeroGrads ZG-es``; the other rows and the CPU seconds from the run before);
before them seed 0 gave ZeroGrads 0.0774 and ``es`` 0.0545, and over seeds 0-4 (``--seed N``)
medians of 0.0615 and 0.0551 (not rerun), against 0.0760 and 0.0673 before the step-cap
rule (a step held at its cap widens the width).

What differs from the paper (``../shared/seed``): our target and blur are
generated here, the paper's display used its own LED layout and pattern; the start is
all LEDs off; every optimizer gets batches of 16 (the paper's ZeroGrads used 2).
"""

# %%
# The display and its target
# --------------------------
# ``LedDisplay`` lives in :mod:`zg_asktell.scenes.led`, where the benchmark finds it too.
# ``_compare`` (next to this file) runs the peers of ``bench/peers.py``; the examples run
# from a clone of the repository, not from an installed package.
import _compare

from zg_asktell.scenes.led import LedDisplay

args = _compare.parse_args(__doc__)
display = LedDisplay.ring(16, 21)
start = display(display.x0)
budget = args.budget or (5_000 if args.full else 2_000)

# %%
# ZeroGrads and the peers at equal evaluations
# --------------------------------------------
# The start width is the paper's 0.33 (a sixth of the box [-1, 1]).
runs = _compare.compare(display, 0.33, budget, 16, optimizers=args.optimizers, seed=args.seed)

# %%
# The screens each answer lights, and the curves
# ----------------------------------------------
# The target, the screens of ZeroGrads' answer and of the best peer's, then the losses.
style = {"cmap": "inferno", "vmin": 0, "vmax": display.target.max()}
fig = _compare.figure(runs, start, display.render, display.target, **style)
_compare.report("led", runs, start, fig, args.out)
