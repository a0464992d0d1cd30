"""Where this process sits in Megatron-core's parallel grid, and the process-wide state that grid lives in.

Decision: Megatron-core keeps its process groups in module globals (`megatron.core.parallel_state`),
so one process holds one grid. The first backend built in a process initialises it (and, in a
single process without a group, a one-rank gloo group on an in-memory store, because Megatron
needs torch.distributed even alone); later backends with the same sizes share it (a policy and
its reference, or two backends in one test); the last `release` tears down what was created.
A different layout while one is live is a ReinforgeError, not a silent reuse.

Rank layout: Megatron order "tp-cp-ep-pp-dp", i.e. rank = dp_rank * (tp * pp) + pp_rank * tp + tp_rank,
so a data-parallel replica's ranks are adjacent, as the Ray executor and torchrun scripts shard rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import torch
import torch.distributed as dist

from reinforge.backends.training.megatron.config import MegatronConfig
from reinforge.backends.training.process_group import ensure_process_group, launch_advice, pick_device, world_size
from reinforge.core.errors import ReinforgeError


@attrs.define(kw_only=True)
class _Shared:
    sizes: tuple[int, int, int]  # (tp, pp, cp)
    users: int
    owns_group: bool


_SHARED: list[_Shared] = []  # at most one entry: the live grid of this process (see the module docstring)


@attrs.define(kw_only=True)
class MegatronGrid:
    """This rank's coordinates and the reductions the backend needs (over data-parallel or tensor-parallel ranks)."""

    device: torch.device
    world_size: int
    rank: int
    tp_size: int
    pp_size: int
    dp_size: int
    tp_rank: int
    pp_rank: int
    dp_rank: int
    released: bool = False

    @classmethod
    def acquire(cls, options: MegatronConfig, seed: int = 0) -> MegatronGrid:
        """Join (or create) the process group and Megatron's grid; validate the layout first."""
        from megatron.core import parallel_state

        device = pick_device(options.device)
        tp, pp, cp = options.tensor_parallel_size, options.pipeline_parallel_size, options.context_parallel_size
        world = world_size()
        replica = tp * pp * cp
        if world % replica:
            raise ReinforgeError(
                f"backend_cfg tensor_parallel_size={tp} x pipeline_parallel_size={pp} x context_parallel_size={cp} "
                f"= {replica} does not divide the world size {world}; {launch_advice(world, replica)}"
            )
        if _SHARED:
            shared = _SHARED[0]
            if shared.sizes != (tp, pp, cp):
                raise ReinforgeError(
                    f"this process already runs a megatron backend with (tp, pp, cp) = {shared.sizes}; Megatron-core "
                    f"holds one parallel layout per process, so a second backend cannot use {(tp, pp, cp)}. Shut the "
                    "first one down, or use the same sizes"
                )
            shared.users += 1
        else:
            owns = ensure_process_group(device, world, even_alone=True)  # Megatron needs a group even alone
            parallel_state.initialize_model_parallel(
                tensor_model_parallel_size=tp,
                pipeline_model_parallel_size=pp,
                context_parallel_size=cp,
                order="tp-cp-ep-pp-dp",
            )
            _seed_model_parallel_rng(device, seed)
            _SHARED.append(_Shared(sizes=(tp, pp, cp), users=1, owns_group=owns))
        return cls(
            device=device,
            world_size=world,
            rank=dist.get_rank(),
            tp_size=tp,
            pp_size=pp,
            dp_size=world // replica,
            tp_rank=parallel_state.get_tensor_model_parallel_rank(),
            pp_rank=parallel_state.get_pipeline_model_parallel_rank(),
            dp_rank=parallel_state.get_data_parallel_rank(),
        )

    def release(self) -> None:
        """Give the grid back; the last user destroys Megatron's groups (and the process group if created here)."""
        if self.released or not _SHARED:
            return
        self.released = True
        shared = _SHARED[0]
        shared.users -= 1
        if shared.users > 0:
            return
        from megatron.core import parallel_state

        parallel_state.destroy_model_parallel()
        if shared.owns_group and dist.is_initialized():
            dist.destroy_process_group()
        _SHARED.clear()

    # ------------------------------------------------------------------ coordinates
    @property
    def is_first_stage(self) -> bool:
        return self.pp_rank == 0

    @property
    def is_last_stage(self) -> bool:
        return self.pp_rank == self.pp_size - 1

    @property
    def is_writer(self) -> bool:
        """Rank 0 writes files every rank would write identically (configs, tokenizer, HF weights)."""
        return self.rank == 0

    # ------------------------------------------------------------------ reductions
    def group(self, over: str) -> dist.ProcessGroup:
        from megatron.core import parallel_state

        groups = {
            "dp": lambda: parallel_state.get_data_parallel_group(),
            "tp": parallel_state.get_tensor_model_parallel_group,
            "pp": parallel_state.get_pipeline_model_parallel_group,
            "all": lambda: dist.group.WORLD,
        }
        return groups[over]()

    def all_reduce(self, tensor: torch.Tensor, op: str = "sum", over: str = "dp") -> torch.Tensor:
        """Reduce `tensor` in place over the data-parallel ranks (or "tp", "pp", "all")."""
        group = self.group(over)
        if dist.get_world_size(group) > 1:
            ops = {"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}
            dist.all_reduce(tensor, op=ops[op], group=group)
        return tensor

    def max_over_dp(self, values: Sequence[int]) -> list[int]:
        """Element-wise maximum of small integers over the data-parallel ranks (e.g. microbatch counts)."""
        tensor = torch.tensor(list(values), dtype=torch.int64, device=self.device)
        return [int(x) for x in self.all_reduce(tensor, "max").tolist()]

    def broadcast_from_stage(self, tensor: torch.Tensor, stage: int) -> torch.Tensor:
        """Every pipeline stage gets `stage`'s `tensor`, in place (same shape and dtype on every stage)."""
        if self.pp_size == 1 or tensor.numel() == 0:
            return tensor
        group = self.group("pp")
        dist.broadcast(tensor, src=dist.get_global_rank(group, stage), group=group)
        return tensor

    def broadcast_from_last_stage(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every pipeline stage gets the last stage's `tensor` (the loss and logprobs are computed there)."""
        return self.broadcast_from_stage(tensor, self.pp_size - 1)

    def object_from_last_stage(self, value: Any) -> Any:
        """The last pipeline stage's `value` (a picklable object, e.g. a metrics dict) on every stage."""
        if self.pp_size == 1:
            return value
        group = self.group("pp")
        box = [value]
        dist.broadcast_object_list(box, src=dist.get_global_rank(group, self.pp_size - 1), group=group)
        return box[0]

    def barrier(self) -> None:
        if dist.is_initialized() and self.world_size > 1:
            dist.barrier()


def _seed_model_parallel_rng(device: torch.device, seed: int) -> None:
    """Megatron's CUDA RNG tracker (initialisation and dropout inside tensor-parallel regions) needs a seed on GPUs."""
    if device.type == "cuda":
        from megatron.core import tensor_parallel

        tensor_parallel.model_parallel_cuda_manual_seed(seed)
