"""Pieces of a training backend's life cycle that do not depend on its engine (shared by dtensor and megatron):
the shut-down / offloaded guard, moving optimizer state between devices, and streaming refit buckets.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

import torch

from reinforge.core.errors import ReinforgeError

Model = TypeVar("Model")


def ensure_live(backend: Any, model: Model | None, name: str) -> Model:
    """`model`, after onloading the backend if it was offloaded; a clear error once the backend was shut down."""
    if model is None:
        raise ReinforgeError(f"the {name} backend was shut down; build a new one")
    if backend.offloaded:
        backend.onload()
    return model


def move_optimizer_state(state: Any, device: torch.device, *, non_blocking: bool = False) -> None:
    """Move every tensor of a torch optimizer's `state` (a dict per parameter) except the step counters."""
    for per_param in state.values():
        for key, value in per_param.items():
            if isinstance(value, torch.Tensor) and key != "step":
                per_param[key] = value.to(device, non_blocking=non_blocking)


def free_device_cache() -> None:
    """After moving to the CPU: let the caching allocator give the freed device memory back."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def stream_buckets(named: Iterable[tuple[str, torch.Tensor]], limit: int) -> Iterator[list[tuple[str, torch.Tensor]]]:
    """Group (name, tensor) pairs, in order, into lists of about `limit` bytes (a larger tensor goes alone)."""
    if limit <= 0:
        raise ReinforgeError(f"named_weights needs bucket_bytes > 0, got {limit}")
    bucket: list[tuple[str, torch.Tensor]] = []
    used = 0
    for name, tensor in named:
        size = tensor.numel() * tensor.element_size()
        if bucket and used + size > limit:
            yield bucket
            bucket, used = [], 0
        bucket.append((name, tensor))
        used += size
    if bucket:
        yield bucket
