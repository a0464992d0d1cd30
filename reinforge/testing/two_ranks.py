"""Run a training backend on 2 data-parallel ranks (gloo, 2 local processes), for the conformance suite.

Why processes of our own rather than torchrun or Ray: the suite receives the backend as a factory
(a fixture's closure), and the ranks must build it exactly as the test does. The factory travels
to each rank with cloudpickle (which pickles a closure by value and the classes it names by
reference), and each rank joins the process group the way a Ray training worker does (MASTER_ADDR,
RANK, WORLD_SIZE, LOCAL_RANK set, gloo group initialised) before building the backend.

Each rank trains on its contiguous shard of the global batch (the Ray executor's `Batch.split`),
saves a checkpoint (every rank calls `save`, as the executor does), trains once more on its shard of
a second batch, and writes what it saw to `rank{r}.pt` for the test to compare:

    python -m reinforge.testing.two_ranks PAYLOAD RANK
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs

WORLD_SIZE = 2


@attrs.frozen
class RankJob:
    """What every rank does; pickled into the payload file."""

    factory: Any  # (policy, *, need_reference=False) -> TrainingBackend
    policy: Any  # PolicyConfig
    batch: Any  # the global Batch of the first step; rank r trains on batch.split(WORLD_SIZE)[r]
    second_batch: Any  # the global Batch of the step after the checkpoint
    checkpoint_dir: str
    out_dir: str
    port: int


def run_two_ranks(job_fields: dict[str, Any], out_dir: Path, *, timeout_s: float = 600.0) -> list[dict[str, Any]]:
    """Start both ranks, wait for them, and return each rank's record (see `_rank_main`)."""
    import cloudpickle
    import torch

    job = RankJob(**job_fields, out_dir=str(out_dir), port=_free_port())
    payload = out_dir / "job.pkl"
    payload.write_bytes(cloudpickle.dumps(job))
    # The ranks see this process's import path, so test modules and local plugin folders import there too.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p), "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    logs = [out_dir / f"rank{rank}.log" for rank in range(WORLD_SIZE)]
    procs = []
    for rank in range(WORLD_SIZE):
        with logs[rank].open("w") as log:
            cmd = [sys.executable, "-m", "reinforge.testing.two_ranks", str(payload), str(rank)]
            procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env))
    try:
        codes = [proc.wait(timeout=timeout_s) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    if any(codes):
        tails = "\n".join(f"--- rank {r} (exit {c}):\n{logs[r].read_text()[-4000:]}" for r, c in enumerate(codes))
        raise AssertionError(f"a rank of the 2-rank run failed:\n{tails}")
    return [torch.load(out_dir / f"rank{rank}.pt", weights_only=False) for rank in range(WORLD_SIZE)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rank_main(payload: str, rank: int) -> None:
    import cloudpickle
    import torch
    import torch.distributed as dist

    from reinforge.testing.conformance_training import ConformanceNLLLoss, weights

    job: RankJob = cloudpickle.loads(Path(payload).read_bytes())
    os.environ.update(
        {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(job.port), "RANK": str(rank), "WORLD_SIZE": str(WORLD_SIZE),
         "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(WORLD_SIZE)}
    )  # fmt: skip
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD_SIZE)  # the caller owns the group, as a Ray worker does
    backend = job.factory(job.policy)
    shard = job.batch.split(WORLD_SIZE)[rank]
    first = backend.train(shard, ConformanceNLLLoss())
    after_first = weights(backend)  # collective: every rank gathers
    backend.save(job.checkpoint_dir)
    second = backend.train(job.second_batch.split(WORLD_SIZE)[rank], ConformanceNLLLoss())
    after_second = weights(backend)
    record = {"first": first, "second": second, "after_first": after_first, "after_second": after_second}
    torch.save(record, Path(job.out_dir) / f"rank{rank}.pt")
    backend.shutdown()
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    _rank_main(sys.argv[1], int(sys.argv[2]))
