"""How a rank's rows are split into forward passes, and how one pass is run.

Three splits (`DTensorConfig.microbatching`) and packing (`sequence_packing`):
- fixed: consecutive groups of `size` rows, each padded to its longest row (the original behaviour);
- sorted: the same group sizes over the rows sorted longest first, so a group's rows have similar
  lengths and little padding;
- token_budget: rows sorted longest first, a new group whenever rows x longest row would pass the
  budget (`Batch.microbatches(token_budget=...)`), so short rows travel many to a pass;
- packing: first-fit-decreasing bins of whole rows laid end to end (`Batch.pack`), one sequence per
  pass with position ids restarting at 0 per row and block-diagonal causal attention: no padding.

Why the split cannot change the result: the loss divides by the global token / sequence counts, so
the gradient is a sum over rows whatever the grouping. Every pass hands the loss function an ordinary
right-padded `Batch` of its rows (packed outputs are unpacked first), so loss functions never see
the layout.
"""

from __future__ import annotations

import attrs
import torch

from reinforge.backends.training.dtensor.config import DTensorConfig
from reinforge.core.batch import Batch, PackedBatch
from reinforge.core.errors import ReinforgeError


@attrs.define(eq=False)
class Microbatch:
    """One forward pass: which source rows it holds, those rows as a trimmed padded batch, and its packing."""

    rows: list[int]  # indices into the rank's batch, in the order of `batch`
    batch: Batch  # the rows, right-padded to the longest of them (what the loss function sees)
    packed: PackedBatch | None = None  # set when the rows run as one packed sequence


def plan(batch: Batch, options: DTensorConfig, size: int) -> list[Microbatch]:
    """Split `batch` (non-empty, with `input_ids` and `input_lengths`) into forward passes per `options`."""
    lengths = [int(x) for x in torch.as_tensor(batch["input_lengths"]).tolist()]
    budget = options.max_tokens_per_microbatch or size * max(lengths)
    if options.sequence_packing:
        if max(lengths) > budget:
            raise ReinforgeError(
                f"sequence_packing: a row has {max(lengths)} tokens but max_tokens_per_microbatch={budget}; "
                f"raise max_tokens_per_microbatch to at least {max(lengths)} (or leave it null)"
            )
        return [Microbatch(bin_.rows, batch.select(bin_.rows).trim(), bin_) for bin_ in batch.pack(budget)]
    if options.microbatching == "fixed":
        order = list(range(len(batch)))
    else:  # longest first; ties keep row order, so the plan is deterministic
        order = sorted(range(len(batch)), key=lambda r: (-lengths[r], r))
    ordered = batch.select(order)
    if options.microbatching == "token_budget":
        groups = ordered.microbatches(token_budget=budget)
    else:
        groups = ordered.microbatches(size=size)
    plans, start = [], 0
    for group in groups:
        plans.append(Microbatch(order[start : start + len(group)], group))
        start += len(group)
    return plans


def wanted_columns(mb: Batch, options: DTensorConfig) -> torch.Tensor | None:
    """`# [b, t]` bool: where the head must run (the token_mask under lm_head_positions=response), else None = all."""
    if options.lm_head_positions == "response" and "token_mask" in mb:
        return torch.as_tensor(mb["token_mask"]).bool()
    return None


def forward(
    module: torch.nn.Module, mb: Microbatch, options: DTensorConfig, temperature: float, device: torch.device
) -> torch.Tensor:  # [b, t] float32, aligned with mb.batch's input_ids
    """Per-token logprobs of the microbatch's rows, in its padded layout whatever layout the pass used."""
    rows = mb.batch
    wanted = wanted_columns(rows, options)
    if mb.packed is None:
        ids, lengths = rows["input_ids"].to(device), rows["input_lengths"].to(device)
        return module(ids, lengths, temperature, None if wanted is None else wanted.to(device))
    packed = mb.packed
    if wanted is not None:
        wanted = torch.cat([wanted[i, :n] for i, n in enumerate(packed.lengths)])[None].to(device)  # [1, N]
    total = torch.tensor([packed.num_tokens], device=device)  # [1]
    flat = module(packed.input_ids.to(device), total, temperature, wanted, packed.position_ids.to(device))  # [1, N]
    pieces = packed.unpack(flat)  # k x [len_i]
    return torch.nn.utils.rnn.pad_sequence(pieces, batch_first=True)  # [k, longest]
