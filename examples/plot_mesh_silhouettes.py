"""
Mesh from silhouettes: a sphere deformed to explain five views
==============================================================

A unit sphere tessellated as an icosphere (162 vertices; ``--full``: 642) is deformed,
each vertex moving along its direction, until its silhouettes from five cameras match
those of a target shape, a stretched rounded box. A pixel of a silhouette is covered when
its centre lies inside a projected triangle, so the loss, the fraction of pixels that
differ, is a step function of every vertex: its gradient is zero wherever it exists.
ZeroGrads meets CMA-ES, SPSA, PRDPT-style annealed ES and our ``es`` preset at equal
evaluations.

Run it with ``python examples/plot_mesh_silhouettes.py`` (2,000 evaluations per optimizer;
``--full``: 642 vertices, 64x64-pixel views, 20,000 evaluations). On this machine (2 CPU
cores shared with other jobs, one thread) the reduced run took 104 s of CPU time and
printed (seed 0; the loss is the fraction of pixels that differ):

=========  ==========  ===========  =======
optimizer  final loss  / ZeroGrads  / start
=========  ==========  ===========  =======
ZeroGrads  0.00723     1.00         0.063
CMA        0.0732      10.1         0.642
SPSA       0.114       15.8         1.000
PRDPT      0.00742     1.03         0.065
ZG-es      0.00684     0.95         0.060
=========  ==========  ===========  =======

The ZeroGrads and ``es`` rows come from version 0.2's per-coordinate widths (rerun with
``--optimizers ZeroGrads ZG-es``; the other rows from the run before, where ZeroGrads
reached 0.075 of the start and ``es`` 0.080). (Before version 0.2's step-cap rule, a step
held at its cap widening the width: ZeroGrads 0.070 of the start, ``es`` 0.116.) Measured
before it, seeds 1 and 2: ZeroGrads 0.053x and 0.068x the start, PRDPT 0.055x and 0.057x,
``es`` 0.082x and 0.053x, CMA-ES 0.62x and 0.68x; SPSA did not move. At the full size a
shortened run (``--full --budget 320 --optimizers ZeroGrads PRDPT``) took 44 s of CPU time
for ZeroGrads (574 MB of added peak memory) and 17 s for PRDPT, about 50 ms per evaluation
in the renderer: the full 20,000 evaluations would take about 2.5 hours of CPU time for
all five optimizers here (not run).

What differs from the paper (``../shared/seed``): a vertex moves along its direction only
(one parameter per vertex; the paper's vertices move freely, and it compared with
differentiable rendering, Nicolet et al.'s large steps, which has no counterpart here),
the views are orthographic silhouettes of 32x32 pixels rather than shaded images, the
target is a procedural shape on the same tessellation (its best loss is 0), no smoothness
prior is added, and the peers are the paper's minus simulated annealing and the genetic
algorithm, plus our ``es`` preset.
"""

# %%
# The mesh and its views
# ----------------------
# ``SilhouetteMesh`` (in :mod:`zg_asktell.scenes.mesh`) rasterizes the silhouettes of a
# batch of meshes from every view at once (numpy, vectorised over triangles and pixels).
import _compare
import matplotlib.pyplot as plt

from zg_asktell.scenes.mesh import SilhouetteMesh

args = _compare.parse_args(__doc__)
mesh = SilhouetteMesh.make(subdivisions=3, size=64) if args.full else SilhouetteMesh.make()
start = mesh(mesh.x0)
budget = args.budget or (20_000 if args.full else 2_000)
print(f"{mesh.dim} vertices, start loss {start:.3f}, {budget} evaluations per optimizer")

# %%
# ZeroGrads and the peers at equal evaluations
# --------------------------------------------
# The start width 0.1 is a fifteenth of the box [-0.5, 1] each radius offset lives in.
runs = _compare.compare(mesh, 0.1, budget, 16, optimizers=args.optimizers, seed=args.seed)

# %%
# Silhouettes: the target, the sphere, ZeroGrads' and the best peer's answers
# ---------------------------------------------------------------------------
# Each row is one answer seen from the five cameras; below, the curves.
best_peer = min((name for name in runs if name != "ZeroGrads"), key=lambda name: runs[name].loss)
answers = {"target": None, "start": mesh.x0, "ZeroGrads": runs["ZeroGrads"].answer}
answers[best_peer] = runs[best_peer].answer
fig = plt.figure(figsize=(9, 9))
grid = fig.add_gridspec(len(answers) + 2, len(mesh.rotations))
for row, (name, x) in enumerate(answers.items()):
    images = mesh.target if x is None else mesh.render(x)[0]
    for view, image in enumerate(images):
        ax = fig.add_subplot(grid[row, view])
        ax.imshow(image, cmap="gray_r", origin="lower")
        ax.set(xticks=[], yticks=[])
        if view == 0:
            loss = "" if x is None else f" ({mesh(x):.3f})"
            ax.set_ylabel(name + loss, fontsize=8)
_compare.plot_curves(fig.add_subplot(grid[-2:, :]), runs, start)
fig.tight_layout()
_compare.report("mesh_silhouettes", runs, start, fig, args.out)
