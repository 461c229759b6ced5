"""``minimize`` on a real Dask ``LocalCluster``: batches evaluated in worker processes."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from zg_asktell import minimize
from zg_asktell.command import Command

distributed = pytest.importorskip("distributed")

SIMULATOR = Path(__file__).resolve().parent / "sims" / "simulate.py"
SMALL = {"batch_size": 6, "hidden_width": 8, "hidden_layers": 1, "encoding_frequencies": 1}


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
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
        yield client


def test_dask_cluster_evaluates_batches_in_worker_processes(tmp_path: Path, client: Any) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    # The simulator records its parent: the Dask worker process that ran the evaluation.
    command = Command([sys.executable, str(SIMULATOR), "{params}", "--ppid", str(pids)])
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


def test_retries_really_run_again_on_dask(tmp_path: Path, client: Any) -> None:
    # The simulator crashes on the first try of one candidate in four; with the executor
    # Dask's docs give (pure=True), a retry with the same arguments was the cached crash.
    flaky = tmp_path / "flaky"
    flaky.mkdir()
    command = Command([sys.executable, str(SIMULATOR), "{params}", "--flaky", str(flaky)])
    result = minimize(
        command,
        np.zeros(3),
        0.5,
        budget=24,
        seed=4,
        retries=1,
        executor=client.get_executor(),
        run_dir=tmp_path / "run",
        progress=False,
        **SMALL,
    )
    items = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    retried = [item for item in items if item["attempt"] == 2]
    assert len(list(flaky.iterdir())) == len(retried) > 0  # one crash per flaky candidate
    assert all(item["status"] == "ok" for item in retried) and result.n_failed == 0
