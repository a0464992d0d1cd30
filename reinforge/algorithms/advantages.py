"""Group-relative advantages (GRPO/RLOO): each sample is judged against the other answers to its prompt.

No critic: the baseline of a sample is the mean reward of its group (all G samples of one
prompt), by default leaving the sample itself out (RLOO), which keeps the baseline independent
of the sample and so the gradient estimate unbiased.

A group is given either as an int G (rows come in contiguous runs of G, as
`Batch.repeat_interleave` lays them out) or as one group id per sample (any order).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

Groups = int | torch.Tensor | Sequence[int]


def _group_index(groups: Groups, num_samples: int, device: torch.device) -> torch.Tensor:  # [N] in 0..K-1
    """Dense group index per sample from a group size or from arbitrary group ids."""
    if isinstance(groups, int):
        if groups < 1 or num_samples % groups:
            raise ValueError(f"group size must be >= 1 and divide the number of samples ({num_samples}), got {groups}")
        return torch.arange(num_samples, device=device) // groups
    ids = torch.as_tensor(groups, device=device)
    if ids.shape != (num_samples,):
        raise ValueError(f"need one group id per sample: {num_samples} rewards but group ids of shape {tuple(ids.shape)}")
    return torch.unique(ids, return_inverse=True)[1]


def baseline_and_std_per_group(
    rewards: torch.Tensor | Sequence[float],  # [N]
    groups: Groups,
    leave_one_out: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:  # baseline [N], std [N]
    """Per-sample baseline and reward spread within the sample's group.

    leave_one_out: b_i = mean of the other rewards of the group, s_i = their Bessel-corrected
    std (0 when fewer than two others). Otherwise: the group mean and Bessel std (0 for one sample).
    A group of one sample gets b = r (advantage 0) and s = 0 either way.
    Computed in float64 around the group mean, so that large rewards lose no precision.
    """
    r = torch.as_tensor(rewards)
    out_dtype = r.dtype if r.is_floating_point() else torch.float32
    r = r.to(torch.float64)
    if r.dim() != 1:
        raise ValueError(f"rewards must be 1-D [N], got shape {tuple(r.shape)}")
    index = _group_index(groups, r.numel(), r.device)  # [N]
    num_groups = int(index.max().item()) + 1 if r.numel() else 0
    zeros = torch.zeros(num_groups, dtype=torch.float64, device=r.device)
    size = zeros.index_add(0, index, torch.ones_like(r))[index]  # [N] n of the sample's group
    group_mean = (zeros.index_add(0, index, r) / zeros.index_add(0, index, torch.ones_like(r)))[index]  # [N]
    centred = r - group_mean  # d_i
    sum_sq = zeros.index_add(0, index, centred.square())[index]  # [N] D = sum_j d_j^2

    if leave_one_out:
        others = size - 1
        # mean of the others: group_mean - d_i / (n - 1)
        baseline = torch.where(others > 0, group_mean - centred / others.clamp_min(1), r)
        # sum over others of (d_j - mean_others)^2 = D - d_i^2 n / (n - 1); Bessel divides by n - 2
        spread = (sum_sq - centred.square() * size / others.clamp_min(1)).clamp_min(0)
        std = torch.where(others > 1, (spread / (others - 1).clamp_min(1)).sqrt(), 0.0)
    else:
        baseline = torch.where(size > 1, group_mean, r)
        std = torch.where(size > 1, (sum_sq / (size - 1).clamp_min(1)).sqrt(), 0.0)
    return baseline.to(out_dtype), std.to(out_dtype)


def grpo_advantages(
    rewards: torch.Tensor | Sequence[float],  # [N]
    group_size: Groups,
    leave_one_out: bool = True,
    normalize: bool = True,
    eps: float = 1e-6,
    clip_low: float | None = None,
    clip_high: float | None = None,
) -> torch.Tensor:  # [N]
    """A_i = r_i - b_i, divided by (s_i + eps) where s_i > 0 when `normalize`, then clamped to [clip_low, clip_high].

    `group_size` is an int G or per-sample group ids. A group whose rewards are all equal gets
    A = 0: it carries no signal about which answer is better. Where s_i = 0 but r_i differs from
    the others (leave-one-out with one odd sample out) A_i is left unnormalised rather than blown up by 1/eps.
    Broadcast A_i over the sample's tokens to fill the `advantages [B, T]` column.
    """
    if clip_low is not None and clip_high is not None and clip_low > clip_high:
        raise ValueError(f"advantage clip_low ({clip_low}) must not exceed clip_high ({clip_high})")
    r = torch.as_tensor(rewards)
    if not r.is_floating_point():
        r = r.to(torch.float32)
    baseline, std = baseline_and_std_per_group(r, group_size, leave_one_out=leave_one_out)
    advantages = r - baseline
    if normalize:
        advantages = torch.where(std > 0, advantages / (std + eps), advantages)
    if clip_low is not None or clip_high is not None:
        advantages = advantages.clamp(min=clip_low, max=clip_high)
    return advantages


def group_has_variance(rewards: torch.Tensor | Sequence[float], group_size: Groups) -> torch.Tensor:  # [N] bool
    """True for every sample whose group's rewards are not all equal (DAPO dynamic sampling keeps these).

    Per sample rather than per group, so `batch.select(mask.nonzero()...)` keeps whole groups.
    """
    r = torch.as_tensor(rewards).to(torch.float64)
    index = _group_index(group_size, r.numel(), r.device)
    num_groups = int(index.max().item()) + 1 if r.numel() else 0
    high = torch.full((num_groups,), float("-inf"), dtype=torch.float64, device=r.device).scatter_reduce(0, index, r, "amax")
    low = torch.full((num_groups,), float("inf"), dtype=torch.float64, device=r.device).scatter_reduce(0, index, r, "amin")
    return (high > low)[index]
