"""Refit plumbing: weight buckets packed so the Ray object store moves them without extra copies.

Why packed: the object store serialises numpy arrays out of band (pickle 5) and hands readers a
read-only view of its shared memory, while a pickled torch tensor is copied on every read. So a
bucket travels as one numpy byte view per tensor plus names, dtypes and shapes: the trainer's
rank 0 writes it into the store once (its method's return value), the driver and every
generation replica on that node read the same memory, and each replica copies it straight into
its engine's parameters. A bucket is about `refit_buffer_size_mb`, never the whole model.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

if TYPE_CHECKING:
    import numpy as np
    import torch

    from reinforge.executors.ray.worker_group import WorkerGroup


@attrs.frozen
class PackedBucket:
    """Named tensors as raw bytes: `arrays[i]` is tensor i, flattened to uint8."""

    names: tuple[str, ...]
    dtypes: tuple[str, ...]  # "float32", "bfloat16", ...
    shapes: tuple[tuple[int, ...], ...]
    arrays: tuple[np.ndarray, ...]

    @property
    def nbytes(self) -> int:
        return sum(int(a.nbytes) for a in self.arrays)


def pack_bucket(named_tensors: Iterable[tuple[str, torch.Tensor]]) -> PackedBucket:
    """Byte views of CPU tensors (device tensors are copied to the host first; nothing else is copied)."""
    names, dtypes, shapes, arrays = [], [], [], []
    for name, tensor in named_tensors:
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)  # [numel]
        names.append(name)
        dtypes.append(str(tensor.dtype).removeprefix("torch."))
        shapes.append(tuple(tensor.shape))
        arrays.append(flat.view(_uint8()).numpy())  # [numel * element_size]
    return PackedBucket(names=tuple(names), dtypes=tuple(dtypes), shapes=tuple(shapes), arrays=tuple(arrays))


def unpack_bucket(packed: PackedBucket) -> list[tuple[str, torch.Tensor]]:
    """(name, tensor) pairs viewing the packed bytes (read-only when they come from the object store)."""
    import torch

    out = []
    with warnings.catch_warnings():
        # Object-store arrays are read-only; the tensors are only ever read (copied into parameters).
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        for name, dtype, shape, array in zip(packed.names, packed.dtypes, packed.shapes, packed.arrays):
            tensor = torch.from_numpy(array).view(getattr(torch, dtype)).reshape(shape)
            out.append((name, tensor))
    return out


@runtime_checkable
class DeliverableBucket(Protocol):
    """A refit bucket that moves its own bytes into every engine replica of a generation group.

    Why: how a bucket travels (by object-store reference, by a broadcast from the trainer, by CUDA
    IPC) is decided where the bucket is made, by the training proxy and its refit transport. The
    generation proxy only asks the bucket to deliver itself, so it knows no transport and no
    bucket type; plain (name, tensor) lists from elsewhere are first stored (`stored_bucket`).
    """

    def deliver_to(self, replicas: WorkerGroup, stats: RefitStats) -> None:
        """Load this bucket on every actor of `replicas`; return once all have loaded it."""
        ...


class WeightBucket(list):
    """A bucket of (name, tensor) pairs that also knows where it lives in the Ray object store.

    The training proxy yields these; delivering one forwards `object_ref` to the replicas instead
    of storing the bucket a second time. Anyone else sees a plain list of pairs.
    """

    def __init__(self, pairs: Iterable[tuple[str, torch.Tensor]], object_ref: Any, nbytes: int) -> None:
        super().__init__(pairs)
        self.object_ref = object_ref
        self.nbytes = nbytes

    def deliver_to(self, replicas: WorkerGroup, stats: RefitStats) -> None:
        """Every replica reads the bucket from the object store (stored once, whatever their number)."""
        start = time.perf_counter()
        refs = [actor.update_weights_packed.remote(self.object_ref) for actor in replicas.actors]
        replicas.gather(refs, list(range(len(refs))), what="update_weights")
        stats.load_seconds += time.perf_counter() - start


def stored_bucket(named_tensors: Iterable[tuple[str, torch.Tensor]], stats: RefitStats) -> WeightBucket:
    """Put plain (name, tensor) pairs into the object store once, as a bucket that can deliver itself."""
    import ray

    pairs = list(named_tensors)
    packed = pack_bucket(pairs)
    stats.buckets += 1
    stats.bytes += packed.nbytes
    return WeightBucket(pairs, object_ref=ray.put(packed), nbytes=packed.nbytes)


@attrs.define
class RefitStats:
    """Where refit time goes, accumulated until `pop()`: gathering + storing on the trainer, loading on the engines."""

    buckets: int = 0
    bytes: int = 0
    gather_seconds: float = 0.0  # trainer ranks gathering full tensors and storing (or staging) them
    load_seconds: float = 0.0  # generation replicas receiving the buckets and loading the weights
    transport: str = "object_store"  # cluster.refit_transport: names the byte metrics (store_, broadcast_, ipc_)

    def pop(self) -> dict[str, float]:
        """Metrics `refit/...` since the last pop (GB/s over gather + load), then reset."""
        seconds = self.gather_seconds + self.load_seconds
        label = _LABELS.get(self.transport, self.transport)
        out = {
            "refit/buckets": float(self.buckets),
            f"refit/{label}_bytes": float(self.bytes),
            "refit/gather_seconds": self.gather_seconds,
            "refit/load_seconds": self.load_seconds,
            f"refit/{label}_gb_per_s": self.bytes / 1e9 / seconds if seconds > 0 else 0.0,
        }
        self.buckets, self.bytes, self.gather_seconds, self.load_seconds = 0, 0, 0.0, 0.0
        return out


_LABELS = {"object_store": "store", "collective": "broadcast", "cuda_ipc": "ipc"}


class Stopwatch:
    """`with stopwatch: ...` adds the elapsed seconds to `seconds` (used around remote waits)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds += time.perf_counter() - self._start


def _uint8() -> Any:
    import torch

    return torch.uint8
