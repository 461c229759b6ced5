"""
Network weights: a digits classifier trained without backpropagation
====================================================================

Every weight and bias of a 64-32-10 ReLU network (2,410 parameters; ``--full``: 64-468-10,
35,110, the paper's 35,152 in size) is a parameter of a black box whose value is the
network's cross-entropy on 1,437 handwritten digits. No optimizer sees a gradient: each
only evaluates the loss of the weights it proposes. ZeroGrads meets separable CMA-ES (full
CMA-ES below 2,000 variables), SPSA, PRDPT-style annealed ES and our ``es`` preset at equal
evaluations; the held-out accuracy (360 digits) is printed under the table.

Run it with ``python examples/plot_network_weights.py`` (4,000 evaluations per optimizer;
``--full``: the paper's 100,000 at 35,110 weights). On this machine (2 CPU cores shared
with other jobs, one thread) the reduced run took 30 s of CPU time and printed (seed 0):

=========  ==========  ===========  =======  =========================
optimizer  final loss  / ZeroGrads  / start  held-out accuracy
=========  ==========  ===========  =======  =========================
ZeroGrads  0.690       1.00         0.275    88.3%
sep-CMA    0.892       1.29         0.355    85.8%
SPSA       2.51        3.64         1.000    12.5% (did not move)
PRDPT      1.88        2.72         0.748    70.3%
ZG-es      0.618       0.90         0.246    88.3%
=========  ==========  ===========  =======  =========================

The ``es`` preset leads on the training loss, tied with ZeroGrads on held-out accuracy,
then separable CMA-ES, whose memory is linear in the dimension. The ZeroGrads and ``es``
rows come from version 0.2's step cap at ``(200 / updates) ** 0.75`` of half a sigma for
runs of more than 200 updates (250 here; rerun with ``--optimizers ZeroGrads ZG-es``; the
other rows from an earlier run); with the cap at the square root ZeroGrads reached 0.267
(88.6%) and ``es`` 0.246 (87.8%). With the per-coordinate widths alone ZeroGrads reached
0.249 of the start and ``es`` 0.231 (held-out 88.3% and 87.2%), before them 0.304 and
0.310 (88.1% and 84.7%). Before version 0.2's step-cap rule (a step held at its cap widens
the width) ZeroGrads reached 0.349 and ``es`` 0.315 at seed 0 (held-out 87.8% and 86.4%);
before its long-budget rule (the width's adaptation spread over a budget of more than 200
updates) 0.418 and 0.486, and separable CMA-ES led on seeds 1 and 2 as well (ZeroGrads
0.49x and 0.41x the start, sep-CMA 0.38x and 0.34x, ``es`` 0.36x and 0.34x; not rerun
since).

At the full size a shortened run (``--full --budget 480``) took 41 s of CPU time for all
five, ZeroGrads 12.7 s of it with 453 MB of added peak memory: the paper's 100,000
evaluations would take about 2.5 hours of CPU time here (not run).
What differs from the paper (``../shared/seed``): the digits are scikit-learn's bundled
8x8 set (1,797 images, shipped with the package), not MNIST's 28x28 (no download); the
network's inputs are 64 pixels, so its hidden layer is wider for the same weight count;
batches of 16 candidates instead of 20; the loss is the full training set's, not a
minibatch's; the peers are the paper's minus simulated annealing and the genetic
algorithm, plus our ``es`` preset.
"""

# %%
# The network as a black box
# --------------------------
# ``DigitsMLP`` (in :mod:`zg_asktell.scenes.digits`) maps a weight vector to the training
# loss; its ``losses`` evaluates a batch of weight vectors at once. The weights start
# uniform in [-1, 1] (each layer scaled by one over the square root of its fan-in).
import _compare
import matplotlib.pyplot as plt

from zg_asktell.scenes.digits import DigitsMLP

args = _compare.parse_args(__doc__)
network = DigitsMLP.make(hidden=468 if args.full else 32, seed=args.seed)
start = network(network.x0)
budget = args.budget or (100_000 if args.full else 4_000)
print(f"{network.dim} weights, start loss {start:.3f}, {budget} evaluations per optimizer")

# %%
# ZeroGrads and the peers at equal evaluations
# --------------------------------------------
# Every optimizer starts with the width 0.3 (about half the initial weights' spread): of
# 0.03, 0.1 and 0.3 tried at the reduced size (seed 0), the best for ZeroGrads and for
# ``es``; separable CMA-ES ended within 10% of its best at each.
runs = _compare.compare(network, 0.3, budget, 16, optimizers=args.optimizers, seed=args.seed)
accuracy = {name: network.accuracy(run.answer) for name, run in runs.items()}
print("held-out accuracy: " + ", ".join(f"{name} {value:.1%}" for name, value in accuracy.items()))
print(f"(the initial weights: {network.accuracy(network.x0):.1%}; chance: 10%)")

# %%
# The curves and the held-out accuracy
# ------------------------------------
fig, (curves, bars) = plt.subplots(1, 2, figsize=(11, 3.6))
_compare.plot_curves(curves, runs, start)
curves.set(title=f"cross-entropy of a {network.dim}-weight network")
bars.barh(list(accuracy), list(accuracy.values()))
bars.set(xlim=(0, 1), xlabel="held-out accuracy (360 digits)")
fig.tight_layout()
_compare.report("network_weights", runs, start, fig, args.out)
