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


def _others_matrix(
    r: torch.Tensor,  # [N] float64
    index: torch.Tensor,  # [N] dense group index
    leave_one_out: bool,
) -> tuple[torch.Tensor, torch.Tensor]:  # values [N, M], mask [N, M] bool
    """Row i holds the rewards each sample is compared with: its group, without itself under leave-one-out.

    M is the largest group size; shorter rows are padded and masked out. Memory is N x M, which
    stays small because groups are (G samples of one prompt).
    """
    n = r.numel()
    order = torch.sort(index, stable=True).indices  # samples grouped, original order within a group
    sizes = torch.bincount(index)  # [K]
    starts = torch.cumsum(sizes, 0) - sizes  # [K] first position of each group in `order`
    slot = torch.empty_like(index)
    slot[order] = torch.arange(n, device=r.device) - starts[index[order]]  # [N] position within the group
    width = int(sizes.max().item())
    padded = torch.zeros(sizes.numel(), width, dtype=r.dtype, device=r.device)  # [K, M]
    padded[index, slot] = r
    present = torch.arange(width, device=r.device)[None, :] < sizes[:, None]  # [K, M]
    values, mask = padded[index], present[index]  # [N, M]
    if leave_one_out:
        mask = mask & (torch.arange(width, device=r.device)[None, :] != slot[:, None])
    return values, mask


def baseline_and_std_per_group(
    rewards: torch.Tensor | Sequence[float],  # [N]
    groups: Groups,
    leave_one_out: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:  # baseline [N], std [N]
    """Per-sample baseline and reward spread within the sample's group.

    leave_one_out: b_i = mean of the other rewards of the group, s_i = their Bessel-corrected
    std (0 when fewer than two others). Otherwise: the group mean and Bessel std (0 for one sample).
    A group of one sample gets b = r (advantage 0) and s = 0 either way.

    Computed directly over each sample's comparison set, in float64, in two passes around one
    member of that set: equal rewards then give a mean equal to them and deviations of exactly 0,
    so s_i is exactly 0 and never a rounding residue that a later division would blow up
    (the shortcut D - d_i^2 n/(n-1) left ~1e-16 there and turned advantages into ~1e6).
    """
    r = torch.as_tensor(rewards)
    out_dtype = r.dtype if r.is_floating_point() else torch.float32
    r = r.to(torch.float64)
    if r.dim() != 1:
        raise ValueError(f"rewards must be 1-D [N], got shape {tuple(r.shape)}")
    if r.numel() == 0:
        empty = torch.zeros(0, dtype=out_dtype, device=r.device)
        return empty, empty.clone()
    index = _group_index(groups, r.numel(), r.device)  # [N]
    values, mask = _others_matrix(r, index, leave_one_out)  # [N, M]
    count = mask.sum(dim=1).to(torch.float64)  # [N] size of the comparison set
    # shift by a member of the set (its first one): exact for equal values, and no cancellation for large rewards
    first = torch.argmax(mask.to(torch.int8), dim=1, keepdim=True)  # [N, 1]
    reference = values.gather(1, first)  # [N, 1]
    shifted = torch.where(mask, values - reference, 0.0)  # [N, M]
    mean = reference.squeeze(1) + shifted.sum(dim=1) / count.clamp_min(1)  # [N]
    deviations = torch.where(mask, values - mean[:, None], 0.0)  # [N, M]
    variance = deviations.square().sum(dim=1) / (count - 1).clamp_min(1)  # [N] Bessel
    # a sample compared with nobody keeps its own reward as baseline (advantage 0)
    baseline = torch.where(count > 0, mean, r) if leave_one_out else torch.where(count > 1, mean, r)
    std = torch.where(count > 1, variance.sqrt(), 0.0)
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
    out_dtype = r.dtype if r.is_floating_point() else torch.float32
    r = r.to(torch.float64)  # rounding the baseline to float32 first would lose r - b for large rewards
    baseline, std = baseline_and_std_per_group(r, group_size, leave_one_out=leave_one_out)
    advantages = r - baseline
    if normalize:
        advantages = torch.where(std > 0, advantages / (std + eps), advantages)
    if clip_low is not None or clip_high is not None:
        advantages = advantages.clamp(min=clip_low, max=clip_high)
    return advantages.to(out_dtype)


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
