"""
The default against plain ES and a bad starting sigma
=====================================================

A 200-variable staircase (the loss is flat between its steps, so its gradient is zero
almost everywhere) minimised three ways from the same start: the default, the default
started with a sigma 10x too small (it widens its sampling on the plateau and follows
behind), and ``preset("es")``, the same sampling and step without the surrogate.
"""

import matplotlib.pyplot as plt
import numpy as np

from zg_asktell import ZeroGrads, preset


def staircase(x: np.ndarray) -> float:
    return float(np.sum(np.round(4 * x) ** 2))


def run(sigma: float, **options: object) -> tuple[np.ndarray, np.ndarray]:
    opt = ZeroGrads(np.full(200, 1.0), sigma=sigma, budget=3_200, seed=0, **options)
    best = []
    while opt.evaluations < opt.budget:
        X = opt.ask()
        opt.tell(X, [staircase(x) for x in X])
        best.append(opt.best_loss)
    return opt.history[:, 0], np.array(best)


runs = {
    "default, sigma 0.2": run(0.2),
    "default, sigma 0.02 (10x too small)": run(0.02),
    'preset("es"), sigma 0.2': run(0.2, config=preset("es")),
}
fig, ax = plt.subplots(figsize=(6, 3.5))
for label, (evaluations, best) in runs.items():
    ax.plot(evaluations, best, label=label)
    print(f"{label}: best loss {best[-1]:.0f} after {int(evaluations[-1])} evaluations")
ax.set(xlabel="evaluations", ylabel="best loss so far", yscale="log", title="200-variable staircase")
ax.legend()
fig.tight_layout()
