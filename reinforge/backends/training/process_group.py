"""Device choice and the torch.distributed process group, as every training backend sets them up.

Decision: a backend joins the caller's process group when one exists (a Ray worker's, a test's),
creates one from torchrun's environment when WORLD_SIZE > 1, and creates a one-rank group on an
in-memory store only when its engine needs a group even alone (FSDP2, Megatron-core). Whoever
created the group destroys it; a caller's group is left alone.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from reinforge.core.errors import ReinforgeError


def pick_device(choice: str) -> torch.device:
    """The device this rank computes on; `cuda` means the local rank's GPU (LOCAL_RANK, as torchrun sets)."""
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ReinforgeError("backend_cfg.device is 'cuda' but CUDA is not available here; use 'auto' or 'cpu'")
    index = int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count()
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def world_size() -> int:
    """The group's size, or the one torchrun announces before the group exists (1 without either)."""
    return dist.get_world_size() if dist.is_initialized() else int(os.environ.get("WORLD_SIZE", "1"))


def launch_advice(world: int, replica: int) -> str:
    """What to do when `replica` ranks per model copy do not divide `world` processes."""
    if world < replica:
        return "launch with torchrun (or more Ray workers) so that there are that many processes"
    return "choose sizes whose product divides the number of processes"


def ensure_process_group(device: torch.device, world: int, *, even_alone: bool) -> bool:
    """Join or create the default group; return True when it was created here (the caller then destroys it)."""
    if dist.is_initialized():
        return False
    if world > 1:
        dist.init_process_group(_backend_name(device))  # torchrun's env:// rendezvous
        return True
    if even_alone:
        dist.init_process_group(_backend_name(device), store=dist.HashStore(), rank=0, world_size=1)
        return True
    return False


def _backend_name(device: torch.device) -> str:
    # gloo everywhere on CPU; on GPUs NCCL for CUDA tensors and gloo for the odd CPU tensor.
    return "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"
