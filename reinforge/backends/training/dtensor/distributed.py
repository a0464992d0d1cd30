"""Where this process sits: world size, data/tensor-parallel ranks, device, device mesh, reductions.

Decision: world size 1 needs no process group. A single process trains a plain module (FSDP over
one rank would shard nothing) and every reduction below is the identity, so a laptop run, a test,
or a notebook never touches torch.distributed. A group is used when one exists (the caller's, e.g.
a Ray worker's), created when torchrun's environment says WORLD_SIZE > 1, and created with one
rank on an in-memory store only when FSDP is asked for in a single process (`fsdp: true`, or
`cpu_offload` on a GPU, which FSDP2 implements). Groups this module creates are destroyed by
`close()`; a caller's group is left alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

from reinforge.backends.training.dtensor.config import DTensorConfig
from reinforge.backends.training.process_group import ensure_process_group, launch_advice, pick_device, world_size
from reinforge.core.errors import ReinforgeError


@attrs.define(kw_only=True)
class ParallelContext:
    """The process's place in the (data-parallel x tensor-parallel) grid; rank = dp_rank * tp_size + tp_rank."""

    device: torch.device
    world_size: int
    rank: int
    dp_size: int
    tp_size: int
    fsdp: bool
    mesh: DeviceMesh | None  # 2-D ("dp", "tp"); None without a process group
    owns_group: bool  # this context created the default process group and destroys it on close()

    @classmethod
    def create(cls, options: DTensorConfig) -> ParallelContext:
        """Validate the layout first, then join (or create) the process group and build the mesh."""
        device = pick_device(options.device)
        tp = options.tensor_parallel_size
        world = world_size()
        if world % tp:
            raise ReinforgeError(
                f"backend_cfg.tensor_parallel_size={tp} does not divide the world size {world}; {launch_advice(world, tp)}"
            )
        dp = world // tp
        fsdp = options.fsdp if options.fsdp is not None else (dp > 1 or (options.cpu_offload and device.type == "cuda"))
        if options.cpu_offload and device.type == "cuda" and not fsdp:
            raise ReinforgeError("backend_cfg.cpu_offload on a GPU is done by FSDP2; leave backend_cfg.fsdp unset or true")
        # FSDP2 needs a group even when it shards over one process.
        owns = ensure_process_group(device, world, even_alone=fsdp)
        mesh = None
        if dist.is_initialized():
            mesh = init_device_mesh(device.type, (dp, tp), mesh_dim_names=("dp", "tp"))
        rank = dist.get_rank() if dist.is_initialized() else 0
        return cls(device=device, world_size=world, rank=rank, dp_size=dp, tp_size=tp, fsdp=fsdp, mesh=mesh, owns_group=owns)

    @property
    def distributed(self) -> bool:
        return self.mesh is not None

    @property
    def dp_mesh(self) -> DeviceMesh | None:
        return None if self.mesh is None else self.mesh["dp"]

    @property
    def tp_mesh(self) -> DeviceMesh | None:
        return None if self.mesh is None else self.mesh["tp"]

    @property
    def is_writer(self) -> bool:
        """Rank 0 writes files that every rank holds identically (configs, tokenizer, HF weights)."""
        return self.rank == 0

    def all_reduce(self, tensor: torch.Tensor, op: str = "sum", over: str = "dp") -> torch.Tensor:
        """Reduce `tensor` in place over the data-parallel ranks (or "tp", or "all"); identity in one process."""
        if self.mesh is None:
            return tensor
        ops = {"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}
        group = dist.group.WORLD if over == "all" else self.mesh.get_group(over)
        if dist.get_world_size(group) > 1:
            dist.all_reduce(tensor, op=ops[op], group=group)
        return tensor

    def max_over_dp(self, values: Sequence[int]) -> list[int]:
        """Element-wise maximum of small integers over the data-parallel ranks (e.g. microbatch counts)."""
        tensor = torch.tensor(list(values), dtype=torch.int64, device=self.device)
        return [int(x) for x in self.all_reduce(tensor, "max").tolist()]

    def barrier(self) -> None:
        if self.mesh is not None:
            dist.barrier()

    def close(self) -> None:
        """Destroy the process group if this context created it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
        self.owns_group = False
        self.mesh = None
