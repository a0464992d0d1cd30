"""`TokenSampler`: the `hf` backend draws each sampled token itself, by the inverse CDF, inside `generate`.

Why not `generate(do_sample=True)`: transformers samples with `torch.multinomial`, which on the CPU
draws one exponential variate per vocabulary entry per row per step (49k for SmolLM2, 152k for
Qwen). Profiled on SmolLM2-135M, 32 rows x 64 tokens on this project's 2-core machine, those draws
(`aten::exponential_`) took 2.1 s of a 16 s `generate`, more than attention. The inverse CDF needs
one uniform per row: a cumulative sum over the filtered distribution, one draw, one binary search.

How it plugs in: `generate` runs its greedy path (`do_sample=False`, no warpers) with this
processor last in its list. The processor applies temperature, top-k and top-p as vLLM and
transformers define them, draws the token, and returns scores that are 0 at the drawn token and
-inf elsewhere, so the greedy argmax picks it. Processors before it (the logprob recorder) still see
the raw logits. The draws come from a `torch.Generator` of the call, not from torch's global RNG.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor


class TokenSampler(LogitsProcessor):
    """Samples one token per row from softmax(filtered logits / temperature); see the module docstring."""

    def __init__(self, temperature: float, top_k: int | None, top_p: float, generator: torch.Generator) -> None:
        if temperature <= 0:
            raise ValueError(f"TokenSampler needs a temperature > 0 (0 is greedy: no sampler), got {temperature}")
        self.temperature = temperature
        self.top_k = top_k
        self.top_p = top_p
        self.generator = generator

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        # scores  # [b, V] the step's raw logits
        logits = filtered_logits(scores.float() / self.temperature, self.top_k, self.top_p)  # [b, V]
        tokens = inverse_cdf_sample(logits, self.generator)  # [b, 1]
        choice = torch.full_like(scores, float("-inf"))
        return choice.scatter_(1, tokens, 0.0)


def filtered_logits(logits: torch.Tensor, top_k: int | None, top_p: float) -> torch.Tensor:
    """`logits  # [b, V]` with the tokens outside top-k, then outside the top-p nucleus, set to -inf.

    Top-k keeps every token tied with the k-th largest. The nucleus keeps a token when the tokens
    strictly ahead of it in descending order hold less than `top_p` of the (top-k renormalised)
    mass, so the most likely token always stays.
    """
    if top_k is not None and top_k > 0 and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # [b, 1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        ordered, order = torch.sort(logits, dim=-1, descending=True)  # [b, V]
        probs = torch.softmax(ordered, dim=-1)
        ahead = probs.cumsum(-1, dtype=torch.float64) - probs  # [b, V] mass strictly ahead of each token
        drop = torch.zeros_like(ahead, dtype=torch.bool).scatter_(1, order, ahead >= top_p)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def inverse_cdf_sample(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One token per row `# [b, 1]` drawn from softmax(logits); -inf logits are never drawn.

    The cumulative sum runs in float64: in float32 a 49k-entry sum loses tokens whose probability is
    below the rounding step of the running total (~6e-8 near 0.5), biasing the tail. The softmax
    itself stays in the logits' precision (each probability to its relative rounding, 1e-7 in float32).
    """
    cdf = torch.softmax(logits, dim=-1).cumsum(-1, dtype=torch.float64)  # [b, V], non-decreasing, last ~1
    total = cdf[:, -1:]  # [b, 1]
    u = torch.rand(total.shape, generator=generator, dtype=torch.float64, device=logits.device) * total
    # u < total always (a product that rounds up to the total would land past the last drawable token).
    u = torch.minimum(u, torch.nextafter(total, torch.zeros_like(total)))
    # right=True: the first entry strictly above u, which is never a zero-probability token (its cdf
    # equals its predecessor's).
    return torch.searchsorted(cdf, u, right=True)
