"""Run each distinct prompt of a forward pass once, and its rows' responses on that prompt's KV cache.

Why: GRPO trains G responses per prompt, DPO a chosen and a rejected one. The padded path runs the
prompt's tokens through every layer once per row, although the G copies compute the same thing. On
a one-shot chat prompt of ~100 tokens and responses of <= 64 (the SmolLM2 recipe), ~60 % of the
positions the trainer computes are copies of a prompt.

How (`DTensorConfig.share_prompt_forward`): a row is split at its first response token (the first
column of `token_mask`); rows of a pass whose prefixes are the same tokens share one prefix row.
The prefix pass runs the distinct prefixes (right-padded) and keeps their keys and values; the cache
is then indexed per row (`owner`) and the suffix pass runs each row's remaining tokens against it,
with its true position ids and a mask that hides the prefix padding. Autograd flows through the
index and the concatenation inside the cache, so each prefix's gradient is the sum over its rows:
the loss, gradients and logprobs equal the padded path's (tests/backends/test_dtensor_microbatching.py).

The output layer runs only at response positions (prompt columns read 0, as with
`lm_head_positions: response`), which is all a loss masked by `token_mask` reads.
"""

from __future__ import annotations

import attrs
import torch

from reinforge.backends.kit import cache_keyword
from reinforge.core.batch import Batch


@attrs.define(eq=False)
class SharedPrompts:
    """One pass's rows as distinct prefixes plus per-row suffixes; row r's tokens = prefix[owner[r]][:split[r]] + suffix[r]."""

    prefix_ids: torch.Tensor  # [u, P] the distinct prefixes, right-padded with 0
    prefix_lengths: torch.Tensor  # [u]
    owner: torch.Tensor  # [b] which prefix each row extends
    split: torch.Tensor  # [b] the row's prefix length = the column of its first suffix token
    suffix_ids: torch.Tensor  # [b, S] right-padded with 0 (S may be 0)
    suffix_lengths: torch.Tensor  # [b]

    def to(self, device: torch.device) -> SharedPrompts:
        return SharedPrompts(*(getattr(self, f.name).to(device) for f in attrs.fields(SharedPrompts)))

    @property
    def num_tokens(self) -> int:
        """Positions the two passes compute (padding included): what this layout costs."""
        return int(self.prefix_ids.numel() + self.suffix_ids.numel())


def split_columns(batch: Batch) -> torch.Tensor:  # [B] long
    """Where each row's prefix ends: its first `token_mask` column (at least 1); a row without one keeps its last token as suffix."""
    mask = torch.as_tensor(batch["token_mask"]).bool()  # [B, T]
    lengths = torch.as_tensor(batch["input_lengths"]).long()  # [B]
    width = mask.shape[1]
    columns = torch.arange(width)[None, :]  # [1, T]
    mask = mask & (columns < lengths[:, None])
    first = torch.where(mask, columns, width).min(dim=1).values  # [B], width where the row has none
    split = torch.where(first < width, first, lengths - 1)
    return split.clamp(min=1)


def prefix_keys(batch: Batch, split: torch.Tensor) -> list[tuple[int, ...]]:
    """Each row's prefix tokens (what decides which rows may share a prefix pass)."""
    ids = torch.as_tensor(batch["input_ids"])
    return [tuple(ids[r, : int(split[r])].tolist()) for r in range(len(split))]


def layout(batch: Batch, split: torch.Tensor, keys: list[tuple[int, ...]] | None = None) -> SharedPrompts:
    """`batch`'s rows (right-padded, `split` per row) as distinct prefixes and per-row suffixes.

    `keys`: the rows' `prefix_keys`, when the caller already has them.
    """
    ids = torch.as_tensor(batch["input_ids"]).long()  # [b, T]
    lengths = torch.as_tensor(batch["input_lengths"]).long()  # [b]
    prefix_of: dict[tuple[int, ...], int] = {}  # prefix tokens -> its index among the distinct prefixes
    owners, first_rows = [], []
    for row, key in enumerate(keys if keys is not None else prefix_keys(batch, split)):
        if key not in prefix_of:
            prefix_of[key] = len(first_rows)
            first_rows.append(row)
        owners.append(prefix_of[key])
    owner = torch.tensor(owners, dtype=torch.long)  # [b]
    leaders = torch.tensor(first_rows, dtype=torch.long)  # [u] the first row holding each prefix
    prefix_lengths = split[leaders]  # [u]
    width = int(prefix_lengths.max())
    columns = torch.arange(width)[None, :]
    prefix_ids = torch.where(columns < prefix_lengths[:, None], ids[leaders, :width], 0)  # [u, P]
    suffix_lengths = lengths - split  # [b]
    suffix_width = int(suffix_lengths.max())
    columns = torch.arange(suffix_width)[None, :]
    source = (split[:, None] + columns).clamp(max=ids.shape[1] - 1)  # [b, S]
    suffix_ids = torch.where(columns < suffix_lengths[:, None], ids.gather(1, source), 0)  # [b, S]
    return SharedPrompts(prefix_ids, prefix_lengths, owner, split.clone(), suffix_ids, suffix_lengths)


def hidden_states(causal_lm: torch.nn.Module, shared: SharedPrompts) -> tuple[torch.Tensor, torch.Tensor]:
    """Final hidden states of the prefix pass `# [u, P, H]` and of the suffix pass `# [b, S, H]`."""
    from transformers import DynamicCache

    decoder = causal_lm.model
    device = shared.prefix_ids.device
    units, width = shared.prefix_ids.shape
    prefix_mask = torch.arange(width, device=device)[None, :] < shared.prefix_lengths[:, None]  # [u, P]
    positions = torch.arange(width, device=device)[None, :].expand(units, width)  # [u, P]
    cache = DynamicCache(config=causal_lm.config)
    keyword = cache_keyword(decoder)
    prefix = decoder(
        input_ids=shared.prefix_ids, attention_mask=prefix_mask.long(), position_ids=positions, use_cache=True,
        **{keyword: cache},
    ).last_hidden_state  # [u, P, H]
    rows, suffix_width = shared.suffix_ids.shape
    if suffix_width == 0:
        return prefix, prefix.new_zeros(rows, 0, prefix.shape[-1])
    cache.batch_select_indices(shared.owner)  # each row gets its prefix's keys and values (differentiable indexing)
    suffix_columns = torch.arange(suffix_width, device=device)[None, :]  # [1, S]
    suffix_mask = suffix_columns < shared.suffix_lengths[:, None]  # [b, S]
    mask = torch.cat([prefix_mask[shared.owner], suffix_mask], dim=1)  # [b, P+S]: prefix padding hidden
    suffix = decoder(
        input_ids=shared.suffix_ids, attention_mask=mask.long(), position_ids=shared.split[:, None] + suffix_columns,
        use_cache=True, **{keyword: cache},
    ).last_hidden_state  # [b, S, H]
    return prefix, suffix


def predicting_states(
    shared: SharedPrompts,
    prefix: torch.Tensor,  # [u, P, H]
    suffix: torch.Tensor,  # [b, S, H]
    rows: torch.Tensor,  # [N] row of each wanted column
    cols: torch.Tensor,  # [N] column (in the row's unsplit layout), each >= the row's split
) -> torch.Tensor:  # [N, H]
    """The hidden state that predicts each wanted token: position col-1, the prefix's last one for the first suffix token."""
    before = cols - 1  # [N]
    split = shared.split[rows]  # [N]
    in_prefix = before < split  # [N]: only the first suffix token is predicted from the prefix
    from_prefix = prefix[shared.owner[rows], before.clamp(max=prefix.shape[1] - 1)]  # [N, H]
    if suffix.shape[1] == 0:
        return from_prefix
    from_suffix = suffix[rows, (before - split).clamp(min=0, max=suffix.shape[1] - 1)]  # [N, H]
    return torch.where(in_prefix[:, None], from_prefix, from_suffix)

