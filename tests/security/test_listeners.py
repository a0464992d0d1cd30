"""No listener of a single-node run binds a non-loopback address (Ray started by reinforge, the
training workers' rendezvous store, the collective refit store, gloo's pair sockets)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.grpo_helpers import CPU_RECIPE, OFFLINE_ENV, REINFORGE, read_metrics, tiny_overrides
from tests.security.listening import is_loopback, listening_sockets, process_tree

pytestmark = [pytest.mark.ray, pytest.mark.integration, pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")]


def test_a_single_node_ray_run_with_collective_refit_listens_on_loopback_only(tiny_model_dir, tmp_path):
    pytest.importorskip("ray")
    overrides = tiny_overrides(
        tiny_model_dir,
        tmp_path,
        steps=2,
        extra=(
            "cluster.executor=ray",
            "cluster.cpus_per_worker=0.5",
            "cluster.local_num_cpus=4",
            "cluster.training_workers=2",  # rank 0 hosts the process-group store
            "cluster.generation_workers=1",
            "cluster.colocated=false",
            "cluster.refit_transport=collective",  # trainer rank 0 hosts the refit store
            "checkpointing.enabled=false",
        ),
    )
    env = {**os.environ, **OFFLINE_ENV, "OMP_NUM_THREADS": "1"}
    env.pop("RAY_ADDRESS", None)
    log = tmp_path / "run.log"
    with log.open("w") as out:
        run = subprocess.Popen([REINFORGE, "train", "--config", str(CPU_RECIPE), *overrides], stdout=out, stderr=subprocess.STDOUT, env=env)
        seen: dict[tuple[int, str, int], str] = {}
        while run.poll() is None:
            tree = process_tree(run.pid)
            for pid, address, port in listening_sockets():
                if pid in tree:
                    seen[(pid, address, port)] = tree[pid]
            time.sleep(0.2)
    assert run.returncode == 0, log.read_text()[-4000:]
    assert [r["step"] for r in read_metrics(tmp_path / "logs")] == [1, 2]

    exposed = {key: name for key, name in seen.items() if not is_loopback(key[1])}
    assert not exposed, f"listeners on non-loopback addresses: {exposed}"
    names = set(seen.values())
    # The sampler saw the run's servers: Ray's GCS and raylet, and listeners in at least two Ray worker processes.
    assert {"gcs_server", "raylet"} <= names, names
    workers = {pid for (pid, _, _), name in seen.items() if name.startswith("ray::")}
    assert len(workers) >= 2, seen
