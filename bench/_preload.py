"""Imported once by the benchmark's forkserver, before it forks any run.

Every run then starts with the heavy libraries loaded and torch's one-off initialisation
(first autograd pass and optimizer step, about a second) done, so neither is timed.
"""

import cma  # noqa: F401
import nevergrad  # noqa: F401
import numpy as np
import sklearn.datasets  # noqa: F401

from zg_asktell import ZeroGrads

from . import peers, problems  # noqa: F401


def _warm_up() -> None:
    optimizer = ZeroGrads(np.zeros(2), 1.0, seed=0)
    X = optimizer.ask()
    optimizer.tell(X, np.zeros(len(X)))


_warm_up()
