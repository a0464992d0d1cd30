"""`RayTrainingBackend`: the `TrainingBackend` seam over a group of training ranks on Ray.

Every method is collective on the workers (SPMD), so each call goes to all ranks at once:
- `train`, `logprobs`, `reference_logprobs`: the batch is split into contiguous data-parallel
  shards (each stored once in the object store, shared by that replica's tensor-parallel
  ranks); `train` returns rank 0's metrics, which the backend has already reduced over all
  ranks; logprobs come from one rank per replica, concatenated in row order.
- `named_weights`: every rank steps its gather together; rank 0 writes each bucket into the
  object store and the driver yields it (a `WeightBucket` that remembers its object ref). With
  `cluster.refit_transport` collective or cuda_ipc, `PeerRefit` streams instead: the senders
  stage each bucket and the driver yields only its layout (`refit_collective.PeerBucket`).
- `save`, `load`, `export_hf`, `offload`, `onload`, `shutdown`: the same call on all ranks.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from reinforge.core.batch import Batch
from reinforge.executors.ray.colocation import Colocation
from reinforge.executors.ray.refit_collective import PeerRefit
from reinforge.executors.ray.weight_sync import RefitStats, WeightBucket, unpack_bucket
from reinforge.executors.ray.worker_group import WorkerGroup, replica_leaders, shard_for_ranks

if TYPE_CHECKING:
    import torch

    from reinforge.core.interfaces import LossFn


class RayTrainingBackend:
    """Implements `TrainingBackend` by dispatching to a `WorkerGroup` of `TrainingWorker` actors."""

    def __init__(
        self,
        group: WorkerGroup,
        *,
        tp_size: int,
        colocation: Colocation,
        refit_stats: RefitStats,
        peer_refit: PeerRefit | None = None,
    ) -> None:
        self.group = group
        self.world_size = len(group)
        self.tp_size = tp_size
        self.dp_size = self.world_size // tp_size
        self.colocation = colocation
        self.refit_stats = refit_stats
        self.peer_refit = peer_refit  # None: buckets go through the object store

    # ------------------------------------------------------------------ dispatch
    def _sharded(self, method: str, batch: Batch, *args: Any, **kwargs: Any) -> list[Any]:
        """Run `method` on every rank with its shard; returns each replica leader's result, in row order."""
        import ray

        self.group.check_usable()
        per_rank = shard_for_ranks(batch, self.world_size, self.tp_size)
        stored: dict[int, Any] = {}
        for shard in per_rank:
            if id(shard) not in stored:
                stored[id(shard)] = ray.put(shard)
        args = tuple(ray.put(a) if not isinstance(a, (int, float, str)) else a for a in args)
        refs = [
            actor.call.remote(method, stored[id(per_rank[rank])], *args, **kwargs)
            for rank, actor in enumerate(self.group.actors)
        ]
        results = self.group.gather(refs, list(range(self.world_size)), what=method)
        return [results[rank] for rank in replica_leaders(self.world_size, self.tp_size)]

    def _everywhere(self, method: str, *args: Any) -> list[Any]:
        return self.group.call_all("call", method, *args)

    # ------------------------------------------------------------------ TrainingBackend
    def train(self, batch: Batch, loss_fn: LossFn, temperature: float = 1.0) -> dict[str, float]:
        """One optimizer step; the metrics of rank 0 (globally reduced by the backend)."""
        self.colocation.before_training()
        return self._sharded("train", batch, loss_fn, temperature=temperature)[0]

    def logprobs(self, batch: Batch, temperature: float = 1.0) -> torch.Tensor:
        self.colocation.before_training()
        return _concat_rows(self._sharded("logprobs", batch, temperature=temperature))

    def reference_logprobs(self, batch: Batch, temperature: float = 1.0) -> torch.Tensor:
        self.colocation.before_training()
        return _concat_rows(self._sharded("reference_logprobs", batch, temperature=temperature))

    def named_weights(self, bucket_bytes: int) -> Iterator[list[tuple[str, torch.Tensor]]]:
        """Buckets gathered by all ranks and written to the object store by rank 0, one at a time."""
        import ray

        group = self.group
        group.check_usable()
        self.colocation.forget()  # gathering may onload the trainer's weights
        if self.peer_refit is not None:
            yield from self.peer_refit.buckets(bucket_bytes)
            return
        group.call_all("begin_weights", bucket_bytes)
        while True:
            start = time.perf_counter()
            refs = [actor.next_weights.remote(rank == 0) for rank, actor in enumerate(group.actors)]
            stored = group.gather(refs, list(range(len(refs))), what="named_weights")[0]  # [ref] from rank 0
            if stored is None:
                self.refit_stats.gather_seconds += time.perf_counter() - start
                return
            packed = ray.get(stored[0])  # maps the store's memory: no copy
            self.refit_stats.gather_seconds += time.perf_counter() - start
            self.refit_stats.buckets += 1
            self.refit_stats.bytes += packed.nbytes
            yield WeightBucket(unpack_bucket(packed), object_ref=stored[0], nbytes=packed.nbytes)

    def save(self, directory: str) -> None:
        self._everywhere("save", directory)

    def load(self, directory: str) -> None:
        self._everywhere("load", directory)

    def export_hf(self, directory: str) -> None:
        self._everywhere("export_hf", directory)

    def offload(self) -> None:
        self.offload_workers()
        self.colocation.forget()

    def onload(self) -> None:
        self.onload_workers()
        self.colocation.forget()

    def shutdown(self) -> None:
        self.group.shutdown()

    # ------------------------------------------------------------------ for Colocation
    def offload_workers(self) -> None:
        self._everywhere("offload")

    def onload_workers(self) -> None:
        self._everywhere("onload")


def _concat_rows(parts: list[torch.Tensor]) -> torch.Tensor:
    """Per-replica `[b_i, T]` results stacked into `[B, T]` (widths padded with 0 if they differ)."""
    import torch

    width = max(p.shape[1] for p in parts)
    padded = [torch.nn.functional.pad(p, (0, width - p.shape[1])) if p.shape[1] < width else p for p in parts]
    return torch.cat(padded, dim=0)
