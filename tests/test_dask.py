"""``minimize`` on a real Dask ``LocalCluster``: batches evaluated in worker processes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from zg_asktell import minimize
from zg_asktell.command import Command

distributed = pytest.importorskip("distributed")

SIMULATOR = Path(__file__).resolve().parent / "sims" / "simulate.py"
SMALL = {"batch_size": 6, "hidden_width": 8, "hidden_layers": 1, "encoding_frequencies": 1}


def test_dask_cluster_evaluates_batches_in_worker_processes(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    # The simulator records its parent: the Dask worker process that ran the evaluation.
    command = Command([sys.executable, str(SIMULATOR), "{params}", "--ppid", str(pids)])
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            env={"OMP_NUM_THREADS": "1"},
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        workers = set(client.run(os.getpid).values())
        remote = minimize(
            command,
            np.zeros(3),
            0.5,
            budget=24,
            seed=4,
            executor=client.get_executor(),
            run_dir=tmp_path / "run",
            progress=False,
            **SMALL,
        )
    parents = {int(path.read_text()) for path in pids.iterdir()}
    assert len(workers) == 2 and os.getpid() not in workers
    assert parents <= workers and len(list(pids.iterdir())) == 24
    local = minimize(command, np.zeros(3), 0.5, budget=24, seed=4, progress=False, **SMALL)
    assert remote.best_loss == local.best_loss and remote.evaluations == 24
    np.testing.assert_array_equal(remote.x, local.x)
