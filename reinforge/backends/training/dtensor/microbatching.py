"""How a rank's rows are split into forward passes, and how one pass is run.

Three splits (`DTensorConfig.microbatching`) and packing (`sequence_packing`):
- fixed: consecutive groups of `size` rows, each padded to its longest row (the original behaviour);
- sorted: the same group sizes over the rows sorted longest first, so a group's rows have similar
  lengths and little padding;
- token_budget: rows sorted longest first, a new group whenever rows x longest row would pass the
  budget (`Batch.microbatches(token_budget=...)`), so short rows travel many to a pass;
- packing: first-fit-decreasing bins of whole rows laid end to end (`Batch.pack`), one sequence per
  pass with position ids restarting at 0 per row and block-diagonal causal attention: no padding;
- shared prompts (`share_prompt_forward`): rows that start with the same prompt travel in the same
  pass, which runs the prompt once and the rows' responses on its KV cache (`shared_prompts.py`);
  fixed/sorted then count rows, token_budget counts prompts once.

Why the split cannot change the result: the loss divides by the global token / sequence counts, so
the gradient is a sum over rows whatever the grouping. Every pass hands the loss function an ordinary
right-padded `Batch` of its rows (packed outputs are unpacked first), so loss functions never see
the layout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import torch

from reinforge.backends.training.dtensor import shared_prompts
from reinforge.backends.training.dtensor.config import DTensorConfig, shares_prompts
from reinforge.backends.training.dtensor.shared_prompts import SharedPrompts
from reinforge.backends.training.rank_agreement import dummy_row
from reinforge.core.batch import Batch, PackedBatch
from reinforge.core.errors import ReinforgeError

if TYPE_CHECKING:
    from reinforge.backends.training.dtensor.distributed import ParallelContext


@attrs.define(eq=False)
class Microbatch:
    """One forward pass: which source rows it holds, those rows as a trimmed padded batch, and its packing."""

    rows: list[int]  # indices into the rank's batch, in the order of `batch`
    batch: Batch  # the rows, right-padded to the longest of them (what the loss function sees)
    packed: PackedBatch | None = None  # set when the rows run as one packed sequence
    shared: SharedPrompts | None = None  # set when the rows' prompts run once each (share_prompt_forward)

    @property
    def positions(self) -> int:
        """Positions the decoder computes in this pass, padding included: what the pass costs."""
        if self.shared is not None:
            return self.shared.num_tokens
        if self.packed is not None:
            return self.packed.num_tokens
        return int(self.batch["input_ids"].numel())

    def head_positions(self, options: DTensorConfig) -> int:
        """Positions the output layer runs at: the response tokens in a shared pass or under
        lm_head_positions=response, else every position the decoder computes."""
        if self.shared is not None or wanted_columns(self.batch, options) is not None:
            return int(torch.as_tensor(self.batch["token_mask"]).bool().sum())
        return self.positions


def plan(batch: Batch, options: DTensorConfig, size: int, *, scoring: bool = False) -> list[Microbatch]:
    """Split `batch` (non-empty, with `input_ids` and `input_lengths`) into forward passes per `options`.

    `scoring`: the passes of `logprobs()` rather than `train()` (see `shares_prompts`).
    """
    lengths = [int(x) for x in torch.as_tensor(batch["input_lengths"]).tolist()]
    budget = options.max_tokens_per_microbatch or size * max(lengths)
    if _shared_passes(batch, options, scoring):
        return _plan_shared(batch, options, size, budget)
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


def _shared_passes(batch: Batch, options: DTensorConfig, scoring: bool) -> bool:
    """Whether `plan` lays `batch` out as shared-prompt passes; `idle_forward` must answer the same."""
    return shares_prompts(options, scoring=scoring) and "token_mask" in batch


def _plan_shared(batch: Batch, options: DTensorConfig, size: int, budget: int) -> list[Microbatch]:
    """Passes of whole prompt groups where they fit: each group's rows adjacent, a pass closed at `size` rows
    (fixed, sorted) or when distinct prompts x longest prompt + rows x longest response would pass `budget`."""
    split = shared_prompts.split_columns(batch)  # [B]
    suffix = torch.as_tensor(batch["input_lengths"]).long() - split  # [B]
    keys = shared_prompts.prefix_keys(batch, split)
    groups: dict[tuple[int, ...], list[int]] = {}
    for row, key in enumerate(keys):
        groups.setdefault(key, []).append(row)
    ordered = list(groups.values())  # first appearance order; rows in batch order
    if options.microbatching != "fixed":  # longest responses first, so a pass pads its suffixes little
        ordered = [sorted(rows, key=lambda r: (-int(suffix[r]), r)) for rows in ordered]
        ordered.sort(key=lambda rows: (-int(split[rows[0]] + suffix[rows[0]]), rows[0]))

    passes: list[list[int]] = [[]]
    prompts: set[int] = set()  # the groups in the open pass, and its longest prompt and response
    longest_prompt = longest_response = 0
    for group, rows in enumerate(ordered):
        for row in rows:
            current = passes[-1]
            if options.microbatching == "token_budget":
                grown = (len(prompts | {group}) * max(longest_prompt, int(split[row]))
                         + (len(current) + 1) * max(longest_response, int(suffix[row])))
                full = bool(current) and grown > budget
            else:
                full = len(current) >= size
            if full:
                passes.append([])
                prompts, longest_prompt, longest_response = set(), 0, 0
            passes[-1].append(row)
            prompts.add(group)
            longest_prompt, longest_response = max(longest_prompt, int(split[row])), max(longest_response, int(suffix[row]))
    plans = []
    for rows in passes:
        trimmed = batch.select(rows).trim()
        plans.append(Microbatch(rows, trimmed, shared=shared_prompts.layout(trimmed, split[rows], [keys[r] for r in rows])))
    return plans


def idle_forward(
    module: torch.nn.Module, batch: Batch, options: DTensorConfig, temperature: float, ctx: ParallelContext,
    *, scoring: bool,
) -> torch.Tensor:  # [1, 2]
    """The pass a data-parallel rank runs once its own passes are done, shaped like the others' passes.

    FSDP gathers each layer's weights on every call of the decoder, and every rank must make the same
    calls. A shared-prompt pass calls the decoder twice (prefix, then suffix), so the idle pass must
    too; otherwise a rank with fewer passes than another waits forever. `batch` (this rank's rows,
    possibly none) only tells, by its columns, which kind of pass `plan` gives the other ranks.
    """
    ids, lengths = dummy_row(ctx)  # [1, 2], [1]
    if _shared_passes(batch, options, scoring):
        rows = Batch(input_ids=ids.cpu(), input_lengths=lengths.cpu(), token_mask=torch.tensor([[0.0, 1.0]]))
        idle = Microbatch([0], rows, shared=shared_prompts.layout(rows, shared_prompts.split_columns(rows)))
        return forward(module, idle, options, temperature, ctx.device)
    return module(ids, lengths, temperature)


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
    if mb.shared is not None:  # the head at the response columns, whatever lm_head_positions says
        ids, lengths = rows["input_ids"].to(device), rows["input_lengths"].to(device)
        response = torch.as_tensor(rows["token_mask"]).bool().to(device)
        return module(ids, lengths, temperature, response, None, mb.shared.to(device))
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
