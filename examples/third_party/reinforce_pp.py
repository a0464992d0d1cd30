"""REINFORCE++ (with a group baseline) as a GRPO variant, written against reinforge's public API only.

Each rollout's advantage is its reward minus the mean reward of its prompt's group, normalised
by the standard deviation over the whole batch (not per group, as GRPO does), which keeps groups
with little spread from getting huge advantages. Everything else — rollouts, logprobs, the
clipped loss, optimizer steps — is GRPO's.

    trainer = rf.Trainer(algorithm=ReinforcePlusPlus(rf.GRPOConfig(num_generations_per_prompt=4)), ...)
"""

from __future__ import annotations

import torch

import reinforge as rf


class ReinforcePlusPlus(rf.GRPO):
    epsilon = 1e-6  # keeps an all-equal batch at advantage 0 instead of 0/0

    def advantages(self, rewards: torch.Tensor, group: int) -> torch.Tensor:
        """`rewards  # [N]`, groups of `group` adjacent samples -> advantages `# [N]`."""
        grouped = rewards.double().view(-1, group)  # [N / group, group]
        centred = (grouped - grouped.mean(dim=1, keepdim=True)).flatten()  # [N]
        return (centred / (centred.std(unbiased=False) + self.epsilon)).to(rewards.dtype)
