"""Per-token logprobs from the final hidden states, a chunk of positions at a time.

Why chunks: the logits of a long batch are the largest tensor of the step (B x T x V floats:
8 x 8192 x 152k x 4 bytes = 40 GB for a Qwen2 vocabulary). Running `lm_head` + log-softmax over
`chunk_size` positions at a time keeps only B x chunk x V alive; in training each chunk is
recomputed in backward (activation checkpointing of the head), so the logits are never stored.

Why a wrapper module: FSDP2 all-gathers the root's own parameters (embeddings, final norm,
lm_head) in the root's forward hook. The chunked head therefore has to run inside the root's
forward; calling `model.model(...)` and `lm_head` from outside would see sharded weights.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from reinforge.backends.training.dtensor import shared_prompts
from reinforge.backends.training.dtensor.shared_prompts import SharedPrompts
from reinforge.core.batch import Batch
from reinforge.core.errors import ReinforgeError


def chunk_logprobs(
    lm_head: nn.Module,
    hidden: torch.Tensor,  # [B, c, H] hidden states at positions that predict the targets
    targets: torch.Tensor,  # [B, c] the next tokens
    temperature: float,
) -> torch.Tensor:  # [B, c] float32
    """log softmax(lm_head(hidden) / temperature) at the target ids, in float32."""
    logits = lm_head(hidden).float()  # [B, c, V]
    vocab = logits.shape[-1]
    # The logits were made here for this call alone: the backward may overwrite them with their gradient.
    picked = TargetLogSoftmax.apply(logits.reshape(-1, vocab), targets.reshape(-1), float(temperature), True)  # [B*c]
    return picked.reshape(targets.shape)


class TargetLogSoftmax(torch.autograd.Function):
    """`log_softmax(logits / T).gather(targets)` for `[N, V]` float32 logits, as one autograd node.

    Why: the composed ops allocate three [N, V] float32 tensors besides the logits (log_softmax's
    output; in backward the gather's dense one-hot gradient and log_softmax's input gradient), and on
    CPU a fresh tensor that size (400 MB for 2048 positions x 49152 vocabulary) costs its page faults
    again on every step. Here the forward keeps the row maximum and the sum of exp(x - max), computed
    over blocks of rows in small reused temporaries, and the backward writes
    d picked / d logits = (onehot(target) - softmax(logits / T)) / T, times the incoming gradient,
    into one tensor: over the logits themselves when `overwrite` (the caller made them for this call
    alone, as `chunk_logprobs` does: lm_head's backward reads its input and weight, not its output;
    a second backward through the same graph then fails loudly on the saved tensor's version check),
    else into a new one.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor, temperature: float, overwrite: bool = False) -> torch.Tensor:  # noqa: ANN001
        scaled = logits if temperature == 1.0 else logits / temperature  # [N, V]
        # Kept as the row maximum and the sum of exp(x - max), never as max + log(sum): an exponent taken
        # relative to a rounded log-sum-exp loses digits (measured 4x the error of torch's log_softmax).
        top = scaled.amax(dim=-1)  # [N]
        total = torch.empty_like(top)  # [N]
        block = max(1, TEMPORARY_BYTES // (scaled.element_size() * scaled.shape[-1]))
        for start in range(0, scaled.shape[0], block):
            rows = slice(start, start + block)
            total[rows] = torch.sub(scaled[rows], top[rows, None]).exp_().sum(dim=-1)
        picked = (scaled.gather(-1, targets[:, None]).squeeze(-1) - top) - total.log()  # [N]
        ctx.save_for_backward(scaled, top, total, targets)
        ctx.temperature = temperature
        ctx.overwrite = overwrite
        return picked

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:  # noqa: ANN001
        scaled, top, total, targets = ctx.saved_tensors
        scale = grad / ctx.temperature  # [N]
        # softmax = exp(x - max) / total, so -softmax x scale is exp(x - max) times a per-row factor.
        shifted = scaled.sub_(top[:, None]) if ctx.overwrite else torch.sub(scaled, top[:, None])  # [N, V]
        grad_logits = shifted.exp_().mul_((-scale / total)[:, None])
        grad_logits.scatter_add_(-1, targets[:, None], scale[:, None])
        return grad_logits, None, None, None


# Blocks of rows whose exp(x - max) temporary stays under this: small enough for malloc to reuse
# (glibc serves blocks under its 32 MB mmap threshold from the heap) instead of faulting in fresh pages.
TEMPORARY_BYTES = 8 << 20


def token_logprobs(
    lm_head: nn.Module,
    hidden: torch.Tensor,  # [B, T, H] final hidden states
    input_ids: torch.Tensor,  # [B, T]
    lengths: torch.Tensor,  # [B] unpadded lengths
    *,
    temperature: float,
    chunk_size: int,
    recompute: bool,
    wanted: torch.Tensor | None = None,  # [B, T] bool: the columns to compute (None = all)
) -> torch.Tensor:  # [B, T] float32
    """Logprobs aligned with `input_ids`: column t is log p(input_ids[t] | input_ids[:t]); column 0 and padding are 0.

    `recompute` checkpoints each chunk (for training), so backward keeps only the hidden states.
    `wanted` limits the head to those columns (e.g. the response tokens); the others read 0.
    """
    if wanted is not None:
        return _selected_logprobs(lm_head, hidden, input_ids, lengths, wanted, temperature, chunk_size, recompute)
    batch, width = input_ids.shape
    targets = input_ids[:, 1:]  # [B, T-1]; position t-1 predicts token t
    pieces = [torch.zeros(batch, 1, dtype=torch.float32, device=hidden.device)]  # column 0: no prefix
    for start in range(0, width - 1, chunk_size):
        stop = min(start + chunk_size, width - 1)
        args = (lm_head, hidden[:, start:stop], targets[:, start:stop], temperature)
        if recompute:
            pieces.append(checkpoint(chunk_logprobs, *args, use_reentrant=False))
        else:
            pieces.append(chunk_logprobs(*args))
    logprobs = torch.cat(pieces, dim=1)  # [B, T]
    positions = torch.arange(width, device=input_ids.device)  # [T]
    valid = positions[None, :] < lengths[:, None]  # [B, T]
    return torch.where(valid, logprobs, torch.zeros_like(logprobs))


def _selected_logprobs(
    lm_head: nn.Module,
    hidden: torch.Tensor,  # [B, T, H]
    input_ids: torch.Tensor,  # [B, T]
    lengths: torch.Tensor,  # [B]
    wanted: torch.Tensor,  # [B, T] bool
    temperature: float,
    chunk_size: int,
    recompute: bool,
) -> torch.Tensor:  # [B, T] float32
    """`token_logprobs` at the `wanted` columns only: gather their predicting hidden states, run the head on those.

    Chunks hold `chunk_size x B` positions, the same number of logits as one chunk of the full path.
    """
    batch, width = input_ids.shape
    columns = torch.arange(width, device=input_ids.device)  # [T]
    take = wanted.bool() & (columns[None, :] < lengths[:, None]) & (columns[None, :] > 0)  # [B, T]
    rows, cols = take.nonzero(as_tuple=True)  # [N], [N]
    selected = hidden[rows, cols - 1]  # [N, H]: position t-1 predicts token t
    return logprobs_at(lm_head, selected, input_ids, rows, cols, temperature, max(chunk_size * batch, 1), recompute)


def logprobs_at(
    lm_head: nn.Module,
    selected: torch.Tensor,  # [N, H] the hidden state that predicts input_ids[rows, cols]
    input_ids: torch.Tensor,  # [B, T]
    rows: torch.Tensor,  # [N]
    cols: torch.Tensor,  # [N]
    temperature: float,
    step: int,
    recompute: bool,
) -> torch.Tensor:  # [B, T] float32, 0 outside (rows, cols)
    """The head's logprobs of the tokens at (rows, cols), laid out like `input_ids`."""
    values = head_logprobs(lm_head, selected, input_ids[rows, cols], temperature, step, recompute)  # [N]
    out = torch.zeros(input_ids.shape, dtype=torch.float32, device=selected.device)  # [B, T]
    return out.index_put((rows, cols), values)


def head_logprobs(
    lm_head: nn.Module,
    selected: torch.Tensor,  # [N, H] the hidden states that predict the targets
    targets: torch.Tensor,  # [N]
    temperature: float,
    step: int,
    recompute: bool,
) -> torch.Tensor:  # [N] float32
    """`chunk_logprobs` over `step` positions at a time (checkpointed when recomputing and there is more than one chunk)."""
    pieces = []
    # At least one (possibly empty) chunk: a pass with no wanted token (rows without response tokens) must still
    # reach the head and the decoder in autograd, so its backward, and FSDP's gradient hooks, run as on other ranks.
    for start in range(0, max(selected.shape[0], 1), step):
        args = (lm_head, selected[None, start : start + step], targets[None, start : start + step], temperature)
        use_checkpoint = recompute and selected.shape[0] > step
        pieces.append((checkpoint(chunk_logprobs, *args, use_reentrant=False) if use_checkpoint else chunk_logprobs(*args))[0])
    return torch.cat(pieces)


class PolicyModule(nn.Module):
    """A causal LM whose forward returns per-token logprobs `# [B, T]` (see the module docstring).

    Parameters keep their Hugging Face names under `causal_lm.` (the wrapper adds none of its own).
    """

    def __init__(self, causal_lm: nn.Module, chunk_size: int) -> None:
        super().__init__()
        self.causal_lm = causal_lm
        self.chunk_size = chunk_size

    def forward(
        self,
        input_ids: torch.Tensor,  # [B, T] right-padded, or [1, N] packed rows
        lengths: torch.Tensor,  # [B]
        temperature: float = 1.0,
        wanted: torch.Tensor | None = None,  # [B, T] bool: columns whose logprob is needed (None = all)
        position_ids: torch.Tensor | None = None,  # [1, N]: packed rows, restarting at 0 per row
        shared: SharedPrompts | None = None,  # the rows as distinct prompts + responses (needs `wanted`)
    ) -> torch.Tensor:  # [B, T] float32
        width = input_ids.shape[1]
        if shared is not None:
            return self._shared_forward(input_ids, lengths, temperature, wanted, shared)
        if position_ids is None:
            attention_mask = (torch.arange(width, device=input_ids.device)[None, :] < lengths[:, None]).long()  # [B, T]
        else:
            # No mask: transformers' mask builder (masking_utils) then reads the restarts of position_ids as row
            # boundaries and builds block-diagonal causal attention (varlen for flash-attention kernels).
            attention_mask = None
            # A row's first token has no prefix in the pack: its column reads 0, as column 0 of a padded row.
            row_start = position_ids != 0  # [1, N]
            wanted = row_start if wanted is None else wanted.bool() & row_start
        outputs = self.causal_lm.model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        )
        hidden = outputs.last_hidden_state  # [B, T, H]
        return token_logprobs(
            self.causal_lm.lm_head,
            hidden,
            input_ids,
            lengths,
            temperature=temperature,
            chunk_size=self.chunk_size,
            recompute=torch.is_grad_enabled() and width - 1 > self.chunk_size,
            wanted=wanted,
        )

    def _shared_forward(
        self,
        input_ids: torch.Tensor,  # [B, T] the rows, right-padded (for the targets and the output layout)
        lengths: torch.Tensor,  # [B]
        temperature: float,
        wanted: torch.Tensor | None,  # [B, T] bool, at or after each row's split
        shared: SharedPrompts,
    ) -> torch.Tensor:  # [B, T] float32, 0 outside `wanted`
        prefix, suffix = shared_prompts.hidden_states(self.causal_lm, shared)  # [u, P, H], [B, S, H]
        batch, width = input_ids.shape
        columns = torch.arange(width, device=input_ids.device)  # [T]
        take = (columns[None, :] < lengths[:, None]) & (columns[None, :] >= shared.split[:, None])  # [B, T]
        if wanted is not None:
            take &= wanted.bool()
        rows, cols = take.nonzero(as_tuple=True)  # [N], [N]
        selected = shared_prompts.predicting_states(shared, prefix, suffix, rows, cols)  # [N, H]
        step = max(self.chunk_size * batch, 1)
        return logprobs_at(self.causal_lm.lm_head, selected, input_ids, rows, cols, temperature, step, torch.is_grad_enabled())


def check_packing(module: PolicyModule, device: torch.device) -> None:
    """Raise unless a packed forward of two rows equals their separate forwards (the model honours the restarts).

    Models that build their attention mask outside transformers' masking utilities would let packed
    rows attend to each other silently; this probe turns that into an error at start-up.
    """
    first, second = torch.tensor([[3, 5, 7, 2, 9]], device=device), torch.tensor([[4, 6, 8]], device=device)
    with torch.no_grad():
        alone = [module(ids, torch.tensor([ids.shape[1]], device=device)) for ids in (first, second)]
        positions = torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2]], device=device)
        packed = module(torch.cat([first, second], dim=1), torch.tensor([8], device=device), 1.0, None, positions)
    worst = max((packed[:, :5] - alone[0]).abs().max().item(), (packed[:, 5:] - alone[1]).abs().max().item())
    if not worst <= 1e-3:
        name = type(module.causal_lm).__name__
        raise ReinforgeError(
            f"sequence_packing: {name} lets packed rows attend to each other (a packed forward differs from the "
            f"separate ones by {worst:.3g}); its attention does not read row boundaries from position_ids. "
            "Turn sequence_packing off for this model (microbatching: token_budget pads little), or use a newer "
            "transformers / an architecture built on its masking utilities (Llama, Qwen2, Mistral, Gemma)"
        )


def check_shared_prompts(module: PolicyModule, device: torch.device) -> None:
    """Raise unless a shared-prompt forward equals the plain one (the model's cache, mask and positions compose).

    Probe: three rows, two of them one prompt with different responses, prompts of different lengths.
    """
    ids = torch.tensor([[3, 5, 7, 2, 9, 4, 0], [3, 5, 7, 8, 6, 0, 0], [4, 6, 8, 9, 5, 3, 2]], device=device)
    lengths = torch.tensor([6, 5, 7], device=device)
    columns = torch.arange(ids.shape[1], device=device)[None, :]
    response = (columns >= torch.tensor([[3], [3], [2]], device=device)) & (columns < lengths[:, None])
    rows = Batch(input_ids=ids.cpu(), input_lengths=lengths.cpu(), token_mask=response.float().cpu())
    shared = shared_prompts.layout(rows, shared_prompts.split_columns(rows)).to(device)
    with torch.no_grad():
        plain = module(ids, lengths, 1.0, response)
        got = module(ids, lengths, 1.0, response, None, shared)
    worst = (plain - got).abs().max().item()
    if not worst <= 1e-3:
        name = type(module.causal_lm).__name__
        raise ReinforgeError(
            f"share_prompt_forward: {name} gives different logprobs when a prompt's keys and values are reused for "
            f"its responses (by {worst:.3g}); its attention does not honour a passed KV cache with explicit "
            "position ids and padding mask. Turn share_prompt_forward off for this model (microbatching: "
            "token_budget keeps padding low)."
        )
