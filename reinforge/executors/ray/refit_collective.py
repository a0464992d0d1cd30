"""Refit straight from trainer to engines: a broadcast group (gloo / NCCL), or CUDA IPC on a shared GPU.

`cluster.refit_transport` picks how a bucket of weights travels once the trainer has gathered it:

- `object_store` (default; not this module): rank 0 writes the bucket into the Ray object store,
  every replica reads it from there (`weight_sync`).
- `collective`: trainer rank 0 and every generation replica form a process group of their own
  (rank 0 = the trainer, rank 1 + r = replica r): a `TCPStore` hosted by trainer rank 0 plus a
  `ProcessGroupGloo` (CPU) or `ProcessGroupNCCL` (GPU) built on it directly, so neither side's
  default `torch.distributed` group is touched (the trainer ranks already have one). Per bucket,
  rank 0 broadcasts one flat byte buffer; only the layout (names, dtypes, shapes, byte offsets)
  goes through Ray. Each replica views its copy of the buffer as tensors and loads them.
- `cuda_ipc` (colocated GPUs): each training rank that shares a GPU with a replica copies the
  bucket into one flat CUDA buffer and sends a CUDA IPC handle of it through Ray; the replica maps
  that memory, copies it into its engine, and the sender frees the buffer only after the driver
  has seen every receiver finish.

What ran where: the gloo collective runs for real on CPU in the Ray tests and the refit
benchmark. The NCCL flavour and CUDA IPC are written against the same torch APIs but have not run
here (no GPU on the machine this was written on); tests/gpu/test_refit_gpu.py exercises them
where CUDA exists.

Why the driver sees "meta" tensors: with these transports the weights never reach the driver, so
the buckets `RayTrainingBackend.named_weights` yields hold (name, tensor on the meta device) pairs
with the right shapes and dtypes (enough to count bytes) and are meant to be handed to
`RayGenerationBackend.update_weights`, which triggers the transfer. Read weight values on the
driver with `refit_transport: object_store`.

The group is made on the first refit and closed when the executor shuts down.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import attrs

from reinforge.core.errors import ReinforgeError

if TYPE_CHECKING:
    import torch

    from reinforge.core.run_config import ClusterConfig
    from reinforge.executors.ray.weight_sync import RefitStats
    from reinforge.executors.ray.worker_group import WorkerGroup

ALIGN = 64  # byte offset of every tensor in a flat buffer: any dtype can view it, and copies stay aligned
STORE_PREFIX = "reinforge_refit"


# --------------------------------------------------------------------------- the flat buffer
@attrs.frozen
class BucketLayout:
    """Where each tensor of a bucket lies in its flat byte buffer; travels through Ray, the bytes do not."""

    names: tuple[str, ...]
    dtypes: tuple[str, ...]  # "float32", "bfloat16", ...
    shapes: tuple[tuple[int, ...], ...]
    offsets: tuple[int, ...]  # byte offset of tensor i, a multiple of ALIGN
    nbytes: int  # tensor bytes (what a refit moves), without the alignment padding
    size: int  # buffer length in bytes

    def meta_pairs(self) -> list[tuple[str, torch.Tensor]]:
        """(name, tensor on the meta device): shapes and dtypes without data, for the driver."""
        import torch

        return [(n, torch.empty(s, dtype=getattr(torch, d), device="meta")) for n, d, s in zip(self.names, self.dtypes, self.shapes)]


def flatten_bucket(named_tensors: Iterable[tuple[str, torch.Tensor]], device: str) -> tuple[torch.Tensor, BucketLayout]:
    """One uint8 buffer on `device` holding every tensor's bytes at its layout offset."""
    import torch

    pairs = [(name, tensor.detach()) for name, tensor in named_tensors]
    offsets, end, nbytes = [], 0, 0
    for _, tensor in pairs:
        offsets.append(end)
        size = tensor.numel() * tensor.element_size()
        nbytes += size
        end += -(-size // ALIGN) * ALIGN
    flat = torch.empty(end, dtype=torch.uint8, device=device)  # [size]
    for (_, tensor), offset in zip(pairs, offsets):
        raw = tensor.contiguous().reshape(-1).view(torch.uint8)  # [numel * element_size]
        flat[offset : offset + raw.numel()].copy_(raw)
    layout = BucketLayout(
        names=tuple(name for name, _ in pairs),
        dtypes=tuple(str(t.dtype).removeprefix("torch.") for _, t in pairs),
        shapes=tuple(tuple(t.shape) for _, t in pairs),
        offsets=tuple(offsets),
        nbytes=nbytes,
        size=end,
    )
    return flat, layout


def bucket_views(flat: torch.Tensor, layout: BucketLayout) -> list[tuple[str, torch.Tensor]]:
    """(name, tensor) views into `flat` (no copies)."""
    import math

    import torch

    out = []
    for name, dtype, shape, offset in zip(layout.names, layout.dtypes, layout.shapes, layout.offsets):
        kind = getattr(torch, dtype)
        size = math.prod(shape) * torch.empty((), dtype=kind).element_size()
        out.append((name, flat[offset : offset + size].view(kind).reshape(shape)))
    return out


# --------------------------------------------------------------------------- worker side
class RefitEndpoint:
    """One actor's end of the refit: the group it joined, and the buckets it staged but has not sent yet."""

    def __init__(self) -> None:
        self.store: Any = None
        self.group: Any = None
        self.device = "cpu"
        self.staged: dict[int, torch.Tensor] = {}  # bucket number -> flat buffer, kept until delivered

    def host_store(self, timeout_s: float) -> tuple[str, int]:
        """Trainer rank 0: start the group's TCPStore on a port the OS picks; returns (this node's address, port)."""
        from reinforge.executors.ray.listeners import host_tcp_store, restrict_gloo, worker_bind_host

        host = worker_bind_host()  # loopback on a single-node run (listeners.py), never every interface
        restrict_gloo(host)
        self.store = host_tcp_store(host, 0, timeout_s)
        return host, int(self.store.port)

    def join(self, address: str, port: int, rank: int, size: int, device: str, timeout_s: float) -> None:
        """Build the broadcast group (rank 0 = trainer rank 0) beside, not inside, the default process group."""
        import torch
        import torch.distributed as dist

        timeout = datetime.timedelta(seconds=timeout_s)
        backend = "nccl" if device == "cuda" else "gloo"
        try:
            if self.store is None:
                from reinforge.executors.ray.listeners import restrict_gloo

                restrict_gloo(address)
                self.store = dist.TCPStore(address, port, is_master=False, timeout=timeout)
            store = dist.PrefixStore(STORE_PREFIX, self.store)
            if device == "cuda":
                torch.cuda.set_device(torch.cuda.current_device())  # Ray's CUDA_VISIBLE_DEVICES: our GPU is the current one
                options = dist.ProcessGroupNCCL.Options()
                options.is_high_priority_stream = False
                options._timeout = timeout
                self.group = dist.ProcessGroupNCCL(store, rank, size, options)
            else:
                self.group = dist.ProcessGroupGloo(store, rank, size, timeout)
            self.device = device
            self._broadcast(torch.zeros(1, dtype=torch.uint8, device=device))  # NCCL connects lazily: connect now
        except Exception as exc:  # noqa: BLE001 - torch raises DistError, RuntimeError, ... for the same causes
            self.close()
            reason = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)[:300]
            raise ReinforgeError(
                f"could not set up the {backend} refit group at {address}:{port} (rank {rank} of {size}; rank 0 is "
                f"training rank 0) within {timeout_s:g} s: {reason}. Every generation replica must reach that "
                "address and port on trainer rank 0's node: check firewalls between the nodes, set "
                f"{'NCCL' if backend == 'nccl' else 'GLOO'}_SOCKET_IFNAME to the network interface that connects them, "
                "raise cluster.refit_timeout_s if workers start slowly, or use cluster.refit_transport: object_store"
            ) from None

    def stage(self, number: int, named_tensors: Iterable[tuple[str, torch.Tensor]], device: str, share: bool) -> Any:
        """Copy a bucket into a flat buffer kept under `number`; returns its layout (and an IPC handle if `share`)."""
        import torch

        flat, layout = flatten_bucket(named_tensors, device)
        self.staged[number] = flat
        if not share:
            return layout
        from torch.multiprocessing.reductions import reduce_tensor

        torch.cuda.synchronize()  # the copies into `flat` are done before another process reads it
        return layout, reduce_tensor(flat)

    def send(self, number: int) -> int:
        """Rank 0: broadcast a staged bucket, then free it; returns its buffer size."""
        flat = self._take(number)
        self._broadcast(flat)
        return int(flat.numel())

    def release(self, number: int) -> None:
        """Free a staged bucket (CUDA IPC: after every receiver has copied it)."""
        self._take(number)

    def forget_staged(self) -> None:
        """A new `named_weights` stream starts: buckets of the previous one that were never delivered are dropped."""
        self.staged.clear()

    def receive(self, layout: BucketLayout) -> torch.Tensor:
        """A replica: the next broadcast bucket, in a fresh buffer on this group's device."""
        import torch

        flat = torch.empty(layout.size, dtype=torch.uint8, device=self.device)
        self._broadcast(flat)
        return flat

    def close(self) -> None:
        """Leave the group and stop the store (rank 0's store going away ends the group for everyone)."""
        group, self.group, self.store = self.group, None, None
        self.staged.clear()
        if group is not None and hasattr(group, "shutdown") and self.device == "cuda":
            group.shutdown()  # NCCL: free the communicator now rather than at process exit

    def _broadcast(self, tensor: torch.Tensor) -> None:
        import torch
        import torch.distributed as dist

        if self.group is None:
            raise ReinforgeError("the refit group is not set up on this worker (it is made on the first refit)")
        options = dist.BroadcastOptions()
        options.rootRank = 0
        options.rootTensor = 0
        self.group.broadcast([tensor], options).wait()
        if tensor.is_cuda:
            torch.cuda.synchronize()  # the sender may free the buffer next; the receiver reads it next

    def _take(self, number: int) -> torch.Tensor:
        if number not in self.staged:
            raise ReinforgeError(
                f"refit bucket {number} is no longer staged on the trainer: a bucket from `named_weights` must be "
                "passed to update_weights before the next `named_weights` call starts a new stream"
            )
        return self.staged.pop(number)


def open_ipc_buffer(shared: tuple[Any, tuple[Any, ...]]) -> torch.Tensor:
    """Map a flat CUDA buffer another process on this GPU shared with `reduce_tensor`."""
    import inspect

    import torch

    rebuild, args = shared
    args = list(args)
    # The handle names the sender's device index; under Ray each process numbers its GPUs from 0,
    # and `same_gpu` checked that both see the same physical device, so use ours.
    position = list(inspect.signature(rebuild).parameters).index("storage_device")
    args[position] = torch.cuda.current_device()
    return rebuild(*args)


def cuda_device_uuid() -> str:
    """This worker's GPU (its UUID), or a ReinforgeError when it has none."""
    import torch

    if not torch.cuda.is_available():
        raise ReinforgeError(
            "cluster.refit_transport: cuda_ipc shares GPU memory between processes, but this worker sees no CUDA "
            "device; run with GPU workers (cluster.gpus_per_node > 0) or use refit_transport: object_store or collective"
        )
    return str(torch.cuda.get_device_properties(torch.cuda.current_device()).uuid)


# --------------------------------------------------------------------------- driver side
class PeerBucket(list):
    """A bucket the driver holds only as a layout: (name, meta tensor) pairs, plus how to deliver it.

    `RayGenerationBackend.update_weights` asks it to `deliver_to` the replicas (the
    `weight_sync.DeliverableBucket` contract), which moves the bytes from the trainer to every
    replica without passing through the driver.
    """

    def __init__(self, refit: PeerRefit, number: int, layout: BucketLayout, shared: dict[int, Any]) -> None:
        super().__init__(layout.meta_pairs())
        self.refit = refit
        self.number = number
        self.layout = layout
        self.nbytes = layout.nbytes
        self.shared = shared  # CUDA IPC: training rank -> its (rebuild, args) handle

    def deliver_to(self, replicas: WorkerGroup, stats: RefitStats) -> None:
        """Broadcast (collective) or map (cuda_ipc) it into the replicas the refit group was set up with."""
        if replicas is not self.refit.generation:
            raise ReinforgeError(
                "a collective / cuda_ipc refit bucket can only go to the generation group of the executor that made it"
            )
        self.refit.deliver(self)


class PeerRefit:
    """The driver's side of `collective` / `cuda_ipc` refit: sets the group up lazily, streams and delivers buckets."""

    def __init__(self, cluster: ClusterConfig, stats: RefitStats) -> None:
        self.transport = cluster.refit_transport
        self.timeout_s = cluster.refit_timeout_s
        self.device = "cuda" if cluster.training_gpus > 0 else "cpu"
        self.stats = stats
        self.training: WorkerGroup | None = None
        self.generation: WorkerGroup | None = None
        self.sender_of: list[int] = []  # replica r -> the training rank that serves it
        self.ready = False
        self.number = 0  # buckets numbered across streams, so a stale bucket is recognised
        self.undelivered: set[int] = set()  # buckets of the current stream still staged on the trainer

    def set_training(self, group: WorkerGroup) -> None:
        self.training = group

    def set_generation(self, group: WorkerGroup, hosts: list[int]) -> None:
        """`hosts[r]`: the training rank whose devices replica r shares (colocated), or 0."""
        self.generation = group
        self.sender_of = hosts if self.transport == "cuda_ipc" else [0] * len(group)

    # ------------------------------------------------------------------ streaming
    def buckets(self, bucket_bytes: int) -> Iterator[PeerBucket]:
        """Every training rank gathers each bucket; the senders stage it and report its layout."""
        training = self._setup()
        senders = set(self.sender_of)
        training.call_all("begin_weights", bucket_bytes)
        training.call_all("refit", "forget_staged")
        self.undelivered.clear()
        share = self.transport == "cuda_ipc"
        while True:
            start = time.perf_counter()
            self.number += 1
            refs = [
                actor.stage_weights.remote(self.number, rank in senders, self.device, share)
                for rank, actor in enumerate(training.actors)
            ]
            results = training.gather(refs, list(range(len(refs))), what="named_weights")
            self.stats.gather_seconds += time.perf_counter() - start
            if results[0] is None:
                return
            if share:  # each sender: (layout, its IPC handle)
                layout = results[min(senders)][0]
                shared = {rank: results[rank][1] for rank in senders}
            else:
                layout, shared = results[0], {}
            self.stats.buckets += 1
            self.stats.bytes += layout.nbytes
            self.undelivered.add(self.number)
            yield PeerBucket(self, self.number, layout, shared)

    def deliver(self, bucket: PeerBucket) -> None:
        """Move one staged bucket into every replica's engine; returns once every replica has loaded it."""
        training, generation = self._setup(), self.generation
        assert generation is not None  # _setup checked
        if bucket.number not in self.undelivered:
            # Checked here, not on the trainer: replicas already waiting in a broadcast that never starts would hang.
            raise ReinforgeError(
                f"refit bucket {bucket.number} is no longer staged on the trainer (delivered already, or from an "
                "earlier stream): pass each bucket from `named_weights` to update_weights once, before the next "
                "`named_weights` call starts a new stream"
            )
        self.undelivered.discard(bucket.number)
        start = time.perf_counter()
        if self.transport == "collective":
            send = training.actors[0].refit.remote("send", bucket.number)
            receives = [actor.receive_weights.remote(bucket.layout) for actor in generation.actors]
            # The sender first: if it fails before broadcasting, say so now rather than after the replicas time out.
            training.gather([send], [0], what="update_weights")
            generation.gather(receives, list(range(len(receives))), what="update_weights")
        else:
            receives = [
                actor.receive_weights.remote(bucket.layout, bucket.shared[self.sender_of[r]])
                for r, actor in enumerate(generation.actors)
            ]
            generation.gather(receives, list(range(len(receives))), what="update_weights")
            senders = sorted(bucket.shared)
            releases = [training.actors[rank].refit.remote("release", bucket.number) for rank in senders]
            training.gather(releases, senders, what="update_weights")
        self.stats.load_seconds += time.perf_counter() - start

    # ------------------------------------------------------------------ set-up and tear-down
    def _setup(self) -> WorkerGroup:
        """The training group, with the transport ready (made on first use)."""
        training, generation = self.training, self.generation
        if training is None or generation is None:
            raise ReinforgeError(
                f"cluster.refit_transport: {self.transport} sends the trainer's weights straight to the generation "
                "workers, so both groups must be started on this executor (executor.training(...) and "
                "executor.generation(...)) before named_weights; use refit_transport: object_store to read weights "
                "without a generation group"
            )
        training.check_usable()
        generation.check_usable()
        if self.ready:
            return training
        if self.transport == "collective":
            self._join(training, generation)
        else:
            self._check_same_gpus(training, generation)
        self.ready = True
        return training

    def _join(self, training: WorkerGroup, generation: WorkerGroup) -> None:
        address, port = training.gather([training.actors[0].refit.remote("host_store", self.timeout_s)], [0], what="refit setup")[0]
        size = 1 + len(generation)
        host = training.actors[0].refit.remote("join", address, port, 0, size, self.device, self.timeout_s)
        guests = [
            actor.refit.remote("join", address, port, 1 + r, size, self.device, self.timeout_s)
            for r, actor in enumerate(generation.actors)
        ]
        generation.gather(guests, list(range(len(guests))), what="refit setup")
        training.gather([host], [0], what="refit setup")

    def _check_same_gpus(self, training: WorkerGroup, generation: WorkerGroup) -> None:
        senders = sorted(set(self.sender_of))
        sender_gpus = dict(zip(senders, training.gather(
            [training.actors[rank].refit.remote("cuda_uuid") for rank in senders], senders, what="refit setup")))
        replica_gpus = generation.gather(
            [actor.refit.remote("cuda_uuid") for actor in generation.actors], list(range(len(generation))), what="refit setup")
        for r, gpu in enumerate(replica_gpus):
            sender = self.sender_of[r]
            if gpu != sender_gpus[sender]:
                raise ReinforgeError(
                    f"cluster.refit_transport: cuda_ipc needs each generation replica on the same GPU as a training rank, "
                    f"but {generation.infos[r].describe()} runs on GPU {gpu} and {training.infos[sender].describe()} on "
                    f"{sender_gpus[sender]}; use colocated placement with generation_gpus_per_worker equal to "
                    "gpus_per_worker, or refit_transport: collective for engines on GPUs of their own"
                )

    def close(self) -> None:
        """Ask every live worker to leave the group (best effort: the workers may already be gone)."""
        import ray

        refs = []
        for group in (self.training, self.generation):
            if group is not None and group.actors and not group.broken:
                refs += [actor.refit.remote("close") for actor in group.actors]
        if refs:
            try:
                ray.wait(refs, num_returns=len(refs), timeout=30.0)
            except Exception:  # noqa: BLE001 - shutting down: the actors are killed next anyway
                pass
        self.ready = False
