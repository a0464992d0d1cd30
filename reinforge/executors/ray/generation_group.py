"""`RayGenerationBackend`: the `GenerationBackend` seam over data-parallel engine replicas on Ray.

`generate` splits the prompts into contiguous chunks, one per replica, and concatenates the
outputs in the original order (each prompt's `n` samples stay adjacent). Replica `r` samples
with the seed `seed + r * SEED_STRIDE`, so replicas never draw the same random numbers and a
single replica samples exactly what the local executor would. `update_weights` asks each
bucket to deliver itself to every replica (`weight_sync.DeliverableBucket`): by object ref, the
bucket in the object store once (rank 0 of the trainer wrote it, or this proxy puts it), or by the
collective / CUDA IPC transport straight from the trainer.
"""

from __future__ import annotations

import attrs

from reinforge.core.batch import Batch
from reinforge.executors.ray.colocation import Colocation
from reinforge.core.interfaces import NamedTensors
from reinforge.core.sampling import SamplingParams
from reinforge.executors.ray.weight_sync import DeliverableBucket, RefitStats, stored_bucket
from reinforge.executors.ray.worker_group import WorkerGroup

SEED_STRIDE = 1_000_003  # a prime: replica seeds never collide with the per-step seeds GRPO derives


def replica_sampling(sampling: SamplingParams, replica: int) -> SamplingParams:
    """The sampling parameters replica `replica` uses (replica 0: unchanged)."""
    if replica == 0 or sampling.seed is None:
        return sampling
    return attrs.evolve(sampling, seed=(sampling.seed + replica * SEED_STRIDE) % 2**31)


class RayGenerationBackend:
    """Implements `GenerationBackend` by dispatching to a `WorkerGroup` of `GenerationWorker` actors."""

    def __init__(self, group: WorkerGroup, *, colocation: Colocation, refit_stats: RefitStats) -> None:
        self.group = group
        self.pad_token_id = 0  # the engines' pad id once they are set up (pads reassembled outputs)
        self.colocation = colocation
        self.refit_stats = refit_stats

    def set_pad_token_ids(self, pad_ids: list[int | None]) -> None:
        self.pad_token_id = pad_ids[0] if pad_ids and pad_ids[0] is not None else 0

    def generate(self, batch: Batch, sampling: SamplingParams) -> Batch:
        self.group.check_usable()
        self.colocation.before_generation()
        chunks = batch.split(max(1, min(len(self.group), len(batch))))
        refs = [
            self.group.actors[r].call.remote("generate", chunk, replica_sampling(sampling, r))
            for r, chunk in enumerate(chunks)
        ]
        outputs = self.group.gather(refs, list(range(len(refs))), what="generate")
        return Batch.concat(outputs, pad_values={"output_ids": self.pad_token_id})

    def update_weights(self, named_tensors: NamedTensors) -> None:
        """Load one bucket on every replica. The training proxy's buckets deliver themselves, by the refit
        transport that made them; any other (name, tensor) list is stored once, then delivered the same way."""
        self.group.check_usable()
        bucket = named_tensors if isinstance(named_tensors, DeliverableBucket) else stored_bucket(named_tensors, self.refit_stats)
        bucket.deliver_to(self.group, self.refit_stats)

    def sleep(self) -> None:
        """Colocated: free the engines' memory for training. Disaggregated: nothing to free for."""
        if self.colocation.enabled:
            self.sleep_workers()
            self.colocation.forget()

    def wake(self) -> None:
        """Colocated: offload the trainer, then wake the engines. Disaggregated: nothing to do."""
        self.colocation.before_generation()

    def shutdown(self) -> None:
        self.group.shutdown()

    # ------------------------------------------------------------------ for Colocation
    def sleep_workers(self) -> None:
        self.group.call_all("call", "sleep")

    def wake_workers(self) -> None:
        self.group.call_all("call", "wake")
