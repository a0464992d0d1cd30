"""Every training loss, behind the `LossFn` protocol of `reinforge.core.interfaces`.

A loss receives per-token logprobs of the policy `# [B, T]` (aligned with `input_ids`) and the
microbatch's columns, and divides by the *global* numbers of valid tokens / sequences, so the
backend may split a batch into any microbatches and still sum to the full-batch loss.
Metrics follow the same rule: summed over microbatches, except keys ending in `_min` / `_max`.

The policy-gradient loss lives in `losses_pg`, DPO in `losses_preference`, the shared masked
reductions and KL estimators in `loss_utils`; this module gathers them and holds the NLL loss.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from reinforge.algorithms.loss_utils import kl_penalty, masked_mean, masked_sum
from reinforge.algorithms.losses_pg import ClippedPGLoss, ClippedPGLossConfig
from reinforge.algorithms.losses_preference import DPOLoss, DPOLossConfig

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "ClippedPGLoss",
    "ClippedPGLossConfig",
    "DPOLoss",
    "DPOLossConfig",
    "NLLLoss",
    "kl_penalty",
    "masked_mean",
    "masked_sum",
]


class NLLLoss:
    """Supervised fine-tuning loss (a `LossFn`): L = -sum(m log pi_theta) / N_tok over the global token count.

    m = token_mask * sample_mask, so only the tokens the data marks for training (assistant
    turns) count, and each counts once whatever the microbatch split.
    """

    def __call__(
        self,
        logprobs: torch.Tensor,  # [B, T] log pi_theta, aligned with input_ids
        batch: Mapping[str, Any],
        global_valid_tokens: torch.Tensor,  # scalar
        global_valid_seqs: torch.Tensor,  # scalar (unused: token-level loss)
    ) -> tuple[torch.Tensor, dict[str, float]]:
        token_mask = batch["token_mask"].to(logprobs.dtype)  # [B, T]
        sample_mask = batch["sample_mask"].to(logprobs.dtype)  # [B]
        mask = token_mask * sample_mask[:, None]  # [B, T]
        loss = -masked_mean(logprobs, mask, global_normalization_factor=global_valid_tokens)
        return loss, {
            "loss": loss.item(),
            "num_unmasked_tokens": mask.sum().item(),
            "num_valid_samples": sample_mask.sum().item(),
        }
