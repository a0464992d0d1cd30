"""Argument checks every training backend makes at the `TrainingBackend` seam (shared by dtensor and megatron).

One implementation, so the same mistake gets the same message whichever backend a run uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from reinforge.core.batch import Batch
from reinforge.core.errors import ReinforgeError

REQUIRED_FOR_TRAIN = ("input_ids", "input_lengths", "token_mask")
REQUIRED_FOR_LOGPROBS = ("input_ids", "input_lengths")


def as_batch(batch: Batch | Mapping[str, Any]) -> Batch:
    """The seam accepts a `Batch` or a plain mapping of columns."""
    return batch if isinstance(batch, Batch) else Batch(batch)


def check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ReinforgeError(
            f"temperature must be > 0 to compute logprobs, got {temperature}; for greedy sampling pass 1.0"
        )


def check_rows(batch: Batch, columns: tuple[str, ...], max_length: int, what: str) -> str | None:
    """Why this rank's rows cannot be used (a message), or None. Zero rows are allowed here (checked globally)."""
    if len(batch) == 0:
        return None
    missing = [key for key in columns if key not in batch]
    if missing:
        return f"{what} needs the batch columns {', '.join(missing)}; it has {', '.join(batch.keys())}"
    lengths = torch.as_tensor(batch["input_lengths"]).tolist()  # [B]
    width = batch["input_ids"].shape[1]
    for row, length in enumerate(lengths):
        if length > max_length:
            return (
                f"{what}: row {row} has {length} tokens, more than policy.max_total_sequence_length={max_length}; "
                "raise the limit or drop/truncate longer samples before training"
            )
        if length < 1:
            return f"{what}: row {row} is empty (input_lengths=0); drop empty rows before scoring or training"
        if length > width:
            return f"{what}: row {row} has input_lengths={length} but input_ids is only {width} wide"
    return None


def with_sample_mask(batch: Batch) -> Batch:
    """The batch, with `sample_mask  # [B]` of ones added when absent (loss functions read it)."""
    if len(batch) == 0 or "sample_mask" in batch:
        return batch
    out = batch.copy()
    out["sample_mask"] = torch.ones(len(batch), dtype=torch.float32)
    return out
