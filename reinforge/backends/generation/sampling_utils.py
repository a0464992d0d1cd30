"""Engine-neutral helpers for generation backends: input checks, padding conversions, output assembly.

Why: every backend receives the same right-padded prompts and must return the same columns
(`GenerationBackend.generate`). Engines want other layouts (HF `generate` wants left padding,
vLLM wants lists), so the conversions and the checks a user can trip live here once, in
vectorised torch, and each backend stays a thin adapter. Imports torch only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from reinforge.core.batch import Batch
from reinforge.core.errors import ReinforgeError

if TYPE_CHECKING:
    from reinforge.core.sampling import SamplingParams

# Columns that a generation backend consumes and replaces (by output_ids / prompt_lengths).
PROMPT_COLUMNS = ("input_ids", "input_lengths")


def check_prompts(
    batch: Batch, sampling: SamplingParams, max_total_sequence_length: int, *, backend: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate the prompts of `batch`; return `input_ids  # [B, P]` and `input_lengths  # [B]` as long tensors.

    Every problem here comes from the caller's data or config, so each raises `ReinforgeError`
    with the row and the limit involved.
    """
    if len(batch) == 0:
        raise ReinforgeError(
            f"the {backend} generation backend received an empty batch (0 rows); pass at least one "
            "tokenized prompt in 'input_ids' with its 'input_lengths'."
        )
    missing = [key for key in PROMPT_COLUMNS if key not in batch]
    if missing:
        raise ReinforgeError(
            f"the batch given to the {backend} generation backend lacks {', '.join(missing)}; it needs right-padded "
            "prompt ids 'input_ids' [B, P] and their lengths 'input_lengths' [B] (see Batch.from_sequences)."
        )
    input_ids, lengths = batch["input_ids"], batch["input_lengths"]
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
        raise ReinforgeError(f"'input_ids' must be a [B, P] tensor of token ids, got {_describe(input_ids)}.")
    if not isinstance(lengths, torch.Tensor) or lengths.dim() != 1:
        raise ReinforgeError(f"'input_lengths' must be a [B] tensor, got {_describe(lengths)}.")
    if input_ids.is_floating_point() or lengths.is_floating_point():
        raise ReinforgeError("'input_ids' and 'input_lengths' must be integer tensors, not floating point.")
    input_ids, lengths = input_ids.long().cpu(), lengths.long().cpu()
    empty = (lengths <= 0).nonzero().flatten().tolist()
    if empty:
        raise ReinforgeError(
            f"prompt row(s) {empty[:10]} have length 0; every prompt needs at least one token to condition on."
        )
    too_wide = (lengths > input_ids.shape[1]).nonzero().flatten().tolist()
    if too_wide:
        row = too_wide[0]
        raise ReinforgeError(
            f"prompt row {row} has input_lengths={int(lengths[row])} but 'input_ids' is only {input_ids.shape[1]} "
            "wide; the lengths must count the real tokens of each right-padded row."
        )
    totals = lengths + sampling.max_new_tokens  # [B]
    over = (totals > max_total_sequence_length).nonzero().flatten().tolist()
    if over:
        row = over[0]
        raise ReinforgeError(
            f"prompt row {row} has {int(lengths[row])} tokens; with max_new_tokens={sampling.max_new_tokens} that is "
            f"{int(totals[row])} tokens, over policy.max_total_sequence_length={max_total_sequence_length} "
            f"({len(over)} row(s) in all). Lower max_new_tokens, shorten or drop long prompts "
            "(data.max_input_seq_length), or raise policy.max_total_sequence_length."
        )
    return input_ids, lengths


def to_left_padded(input_ids: torch.Tensor, lengths: torch.Tensor, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded `[B, P]` -> left-padded `[B, W]` (W = longest prompt) with its attention mask `[B, W]`.

    Decoder-only `generate` appends new tokens at the right end of every row, so the prompts
    must end in the same column.
    """
    width = int(lengths.max())
    shift = width - lengths  # [B] pad tokens in front of each row
    source = torch.arange(width).unsqueeze(0) - shift.unsqueeze(1)  # [B, W] column of input_ids to read
    real = source >= 0  # [B, W]
    left = input_ids.gather(1, source.clamp(min=0))  # [B, W]
    left = left.masked_fill(~real, pad_id)
    return left, real.long()


def left_to_right_padded(
    values: torch.Tensor, shift: torch.Tensor, total_lengths: torch.Tensor, width: int, fill: float | int
) -> torch.Tensor:
    """Move each row of `values  # [B, S]` left by `shift[i]` columns, keep `total_lengths[i]` of them, fill the rest.

    Turns `generate`'s left-padded `[B, W + G]` output (ids or per-token values) into the
    right-padded `[B, width]` layout of the interface.
    """
    columns = torch.arange(width, device=values.device).unsqueeze(0)  # [1, width]
    source = (columns + shift.unsqueeze(1)).clamp(max=values.shape[1] - 1)  # [B, width]
    out = values.gather(1, source)  # [B, width]
    return out.masked_fill(columns >= total_lengths.unsqueeze(1), fill)


def carried_columns(batch: Batch, n: int) -> Batch:
    """The input's other columns (lists, per-row tensors), each row repeated `n` times, adjacent.

    The prompt columns are dropped: `output_ids` and `prompt_lengths` replace them, and keeping a
    prompt-only `input_ids` would contradict the standard meaning of that name (prompt + response).
    """
    rest = batch.copy()
    for key in PROMPT_COLUMNS:
        if key in rest:
            del rest[key]
    return rest.repeat_interleave(n)


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {list(value.shape)}"
    return f"a {type(value).__name__}"
