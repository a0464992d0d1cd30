"""Per-token logprobs from a Megatron `GPTModel`, with a vocabulary-parallel, chunked output layer.

Why chunks: the logits are the largest tensor of a step (B x T x V/tp floats). The model's
forward is run with its output layer passed through (it returns the final hidden states), and
the output layer + log-softmax then run over `chunk_size` positions at a time; in training each
chunk is recomputed in backward, so only B x chunk x V/tp logits are alive at once.

Why Megatron's `vocab_parallel_cross_entropy`: with tensor parallelism each rank holds a slice
of the vocabulary; that function reduces the max, the sum of exponentials and the target logit
over the tensor-parallel ranks, so log p(target) is exact without gathering the logits.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint


@contextmanager
def output_layer_passthrough(gpt: Any) -> Iterator[dict[str, Any]]:
    """While active, `gpt`'s output layer returns its input (the final hidden states, `# [T, B, H]`).

    Yields a dict that receives the weight GPTModel passes to the output layer (the shared
    embedding when embeddings are tied, else None: the layer's own weight).
    """
    layer = gpt.output_layer
    captured: dict[str, Any] = {"weight": None}

    def passthrough(hidden: torch.Tensor, weight: torch.Tensor | None = None, runtime_gather_output: Any = None) -> Any:
        captured["weight"] = weight
        return hidden, None

    layer.forward = passthrough  # an instance attribute shadows the class's forward
    try:
        yield captured
    finally:
        del layer.forward


def chunk_logprobs(
    gpt: Any,
    weight: torch.Tensor | None,
    hidden: torch.Tensor,  # [c, B, H] hidden states at positions that predict the targets
    targets: torch.Tensor,  # [c, B] the next tokens
    temperature: float,
) -> torch.Tensor:  # [c, B] float32
    """log softmax(output_layer(hidden) / temperature) at the targets, over the vocabulary-parallel ranks."""
    from megatron.core.tensor_parallel import vocab_parallel_cross_entropy

    layer = gpt.output_layer
    logits, _ = type(layer).forward(layer, hidden, weight=weight)  # [c, B, V/tp]
    logits = logits.float()
    logits = logits / temperature if temperature != 1.0 else logits.clone()  # the loss works on its input in place
    return -vocab_parallel_cross_entropy(logits, targets)


def forward_logprobs(
    model: torch.nn.Module,  # the DDP-wrapped (or bare) GPTModel
    gpt: Any,  # the GPTModel itself
    input_ids: torch.Tensor,  # [B, T] right-padded
    lengths: torch.Tensor,  # [B]
    *,
    temperature: float,
    chunk_size: int,
    sequence_parallel: bool,
) -> torch.Tensor:  # [B, T] float32 (on a pipeline stage other than the last: its output activations)
    """Logprobs aligned with `input_ids` (column t is log p(ids[t] | ids[:t]); column 0 and padding are 0).

    Right padding needs no attention mask: with causal attention a valid position never sees
    the padding after it, and the padded positions are zeroed here.

    A pipeline stage without the output layer returns its decoder output (`# [T, B, H]`), which
    Megatron's schedule sends to the next stage (the stage's input comes from the previous one).
    """
    batch, width = input_ids.shape
    if not gpt.post_process:
        positions = torch.arange(width, device=input_ids.device)[None, :].expand(batch, width)  # [B, T]
        return model(input_ids, positions, None)
    positions = torch.arange(width, device=input_ids.device)  # [T]
    position_ids = positions[None, :].expand(batch, width)  # [B, T]
    targets = input_ids[:, 1:].t().contiguous()  # [T-1, B]; position t-1 predicts token t
    if sequence_parallel:  # the output layer gathers the sequence itself: no chunking
        logits = model(input_ids, position_ids, None)  # [B, T, V/tp]
        logits = logits[:, :-1].transpose(0, 1).float() / temperature  # [T-1, B, V/tp]
        from megatron.core.tensor_parallel import vocab_parallel_cross_entropy

        picked = -vocab_parallel_cross_entropy(logits.contiguous(), targets)  # [T-1, B]
    else:
        with output_layer_passthrough(gpt) as captured:
            hidden = model(input_ids, position_ids, None)  # [B, T, H] (GPTModel transposes its output)
        hidden = hidden.transpose(0, 1)  # [T, B, H]
        recompute = torch.is_grad_enabled() and width - 1 > chunk_size
        pieces = []
        for start in range(0, width - 1, chunk_size):
            stop = min(start + chunk_size, width - 1)
            args = (gpt, captured["weight"], hidden[start:stop], targets[start:stop], temperature)
            pieces.append(checkpoint(chunk_logprobs, *args, use_reentrant=False) if recompute else chunk_logprobs(*args))
        picked = torch.cat(pieces, dim=0) if pieces else hidden.new_zeros(0, batch)  # [T-1, B]
    logprobs = torch.cat([torch.zeros(batch, 1, dtype=torch.float32, device=input_ids.device), picked.t()], dim=1)  # [B, T]
    valid = positions[None, :] < lengths[:, None]  # [B, T]
    return torch.where(valid, logprobs, torch.zeros_like(logprobs))
