"""Centred-rank advantages: a third-party advantage estimator, written against reinforge's public seam only.

Each rollout is scored by its reward's rank within its prompt's group, mapped to [-1/2, 1/2]
(ties share their average rank): A_i = rank_i / (G - 1) - 1/2. Only the order of the rewards
matters, so a reward on any scale (or one with outliers) gives the same advantages; every group's
advantages sum to 0, and a group whose rewards are all equal gets 0. (The centred-rank transform of
evolution strategies, Salimans et al. 2017.)

Registered as `centred_rank` by `third_party_plugins.py`; a run selects it by name:

    rf.GRPO(rf.GRPOConfig(advantage_estimator="centred_rank"))    # or grpo.advantage_estimator: centred_rank
"""

from __future__ import annotations

from typing import Any

import torch


class CentredRank:
    """`estimator(rewards [N], group, *, config) -> advantages [N]` (reinforge's AdvantageEstimator protocol)."""

    def __init__(self, options: Any = None) -> None:
        del options  # takes none

    def __call__(self, rewards: torch.Tensor, group: int, *, config: Any = None) -> torch.Tensor:
        if group == 1:
            return torch.zeros_like(rewards)  # nothing to compare with
        grouped = rewards.double().view(-1, group)  # [K, G]
        below = (grouped[:, None, :] < grouped[:, :, None]).sum(dim=2).double()  # [K, G] rewards below each one
        ties = (grouped[:, None, :] == grouped[:, :, None]).sum(dim=2).double() - 1  # [K, G] others equal to it
        rank = below + ties / 2  # [K, G] in 0 .. G - 1, ties averaged
        return (rank / (group - 1) - 0.5).flatten().to(rewards.dtype)  # [N]
