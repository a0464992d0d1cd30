"""Masked reductions and the KL estimators that every loss shares.

Losses see right-padded `[B, T]` tensors whose padded or prompt positions may hold anything
(0, -inf from a masked logit, NaN from 0 * inf). The helpers here select the valid entries
instead of multiplying by the mask, so garbage outside the mask never leaks into a sum or
its gradient, and an empty mask gives 0 rather than NaN.
"""

from __future__ import annotations

from typing import Literal

import torch

KLKind = Literal["k1", "k2", "k3"]
KL_KINDS: tuple[str, ...] = ("k1", "k2", "k3")


def masked_sum(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Sum of `values * mask` (mask may hold weights), ignoring whatever sits where mask == 0."""
    mask = mask.to(values.dtype)
    weighted = torch.where(mask != 0, values * mask, torch.zeros_like(values))
    return weighted.sum() if dim is None else weighted.sum(dim)


def safe_divide(numerator: torch.Tensor, denominator: torch.Tensor | float) -> torch.Tensor:
    """`numerator / denominator`, with 0 wherever the denominator is 0 (an empty batch has mean 0)."""
    denominator = torch.as_tensor(denominator, dtype=numerator.dtype, device=numerator.device)
    nonzero = denominator != 0
    return torch.where(nonzero, numerator / torch.where(nonzero, denominator, torch.ones_like(denominator)), 0.0)


def masked_mean(
    values: torch.Tensor,
    mask: torch.Tensor,
    dim: int | None = None,
    global_normalization_factor: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Mean of `values` over the entries where mask != 0; 0 (not NaN) when the mask is all zero.

    `global_normalization_factor` replaces the local mask sum as the denominator: a microbatch
    then contributes its share of the global mean, so summing microbatches gives the global mean.
    """
    total = masked_sum(values, mask, dim)
    if global_normalization_factor is None:
        count = mask.to(values.dtype).sum() if dim is None else mask.to(values.dtype).sum(dim)
    else:
        count = global_normalization_factor
    return safe_divide(total, count)


def kl_penalty(
    logprobs: torch.Tensor,  # [B, T] log pi_theta, with grad
    reference_logprobs: torch.Tensor,  # [B, T] log pi_ref
    kind: KLKind | str = "k3",
    input_clamp: float | None = 20.0,
    output_clamp: float | None = 10.0,
    sampling_logprobs: torch.Tensor | None = None,  # [B, T] log pi_gen, for the on-policy approximation
) -> torch.Tensor:  # [B, T]
    """Per-token estimate of KL(pi_theta || pi_ref) from tokens sampled by the policy (Schulman's k1/k2/k3).

    With logr = clamp(log pi_ref - log pi_theta, +-input_clamp):
    k1 = -logr, k2 = logr^2 / 2, k3 = exp(logr) - 1 - logr. Each is multiplied by
    w = exp(log pi_theta - sg(log pi_theta)): w equals 1, but its gradient adds the
    score-function term k * grad log pi_theta, which an estimator evaluated on samples of the
    policy itself needs to be the gradient of the KL (the pathwise part alone is biased).
    With `sampling_logprobs` (the tokens came from another policy, the generator), w is instead
    pi_theta / pi_gen with its gradient (NeMo-RL's `use_on_policy_kl_approximation`): an importance
    weight that makes the estimate one of the KL of the current policy; non-finite weights become 0.
    Where logr was clamped the estimate is a constant and w is detached too, so a clamped token
    contributes no gradient at all. The product is then clamped to +-output_clamp (None: no clamp).
    """
    if kind not in KL_KINDS:
        raise ValueError(f"unknown KL estimator {kind!r}; expected one of {', '.join(KL_KINDS)}")
    raw_log_ratio = reference_logprobs - logprobs  # [B, T]
    if input_clamp is None:
        log_ratio = raw_log_ratio
        clamped = torch.zeros_like(raw_log_ratio, dtype=torch.bool)
    else:
        log_ratio = raw_log_ratio.clamp(-input_clamp, input_clamp)
        clamped = raw_log_ratio.detach().abs() > input_clamp

    if kind == "k1":
        kl = -log_ratio
    elif kind == "k2":
        kl = 0.5 * log_ratio.square()
    else:
        kl = log_ratio.exp() - 1.0 - log_ratio

    behaviour = logprobs.detach() if sampling_logprobs is None else sampling_logprobs.detach()
    weight = torch.nan_to_num((logprobs - behaviour).exp(), nan=0.0, posinf=0.0, neginf=0.0)
    weight = torch.where(clamped, weight.detach(), weight)
    kl = weight * kl
    if output_clamp is not None:
        kl = kl.clamp(-output_clamp, output_clamp)
    return kl
