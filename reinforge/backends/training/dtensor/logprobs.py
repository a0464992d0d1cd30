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


def chunk_logprobs(
    lm_head: nn.Module,
    hidden: torch.Tensor,  # [B, c, H] hidden states at positions that predict the targets
    targets: torch.Tensor,  # [B, c] the next tokens
    temperature: float,
) -> torch.Tensor:  # [B, c] float32
    """log softmax(lm_head(hidden) / temperature) at the target ids, in float32."""
    logits = lm_head(hidden).float()  # [B, c, V]
    if temperature != 1.0:
        logits = logits / temperature
    return torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def token_logprobs(
    lm_head: nn.Module,
    hidden: torch.Tensor,  # [B, T, H] final hidden states
    input_ids: torch.Tensor,  # [B, T]
    lengths: torch.Tensor,  # [B] unpadded lengths
    *,
    temperature: float,
    chunk_size: int,
    recompute: bool,
) -> torch.Tensor:  # [B, T] float32
    """Logprobs aligned with `input_ids`: column t is log p(input_ids[t] | input_ids[:t]); column 0 and padding are 0.

    `recompute` checkpoints each chunk (for training), so backward keeps only the hidden states.
    """
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
        input_ids: torch.Tensor,  # [B, T] right-padded
        lengths: torch.Tensor,  # [B]
        temperature: float = 1.0,
    ) -> torch.Tensor:  # [B, T] float32
        width = input_ids.shape[1]
        attention_mask = (torch.arange(width, device=input_ids.device)[None, :] < lengths[:, None]).long()  # [B, T]
        outputs = self.causal_lm.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        hidden = outputs.last_hidden_state  # [B, T, H]
        return token_logprobs(
            self.causal_lm.lm_head,
            hidden,
            input_ids,
            lengths,
            temperature=temperature,
            chunk_size=self.chunk_size,
            recompute=torch.is_grad_enabled() and width - 1 > self.chunk_size,
        )

