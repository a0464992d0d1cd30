"""Direct Preference Optimization: learn from (chosen, rejected) pairs without a reward model.

Pairs travel as adjacent rows (chosen at even rows, rejected at the odd row after it), so any
row split into even-sized microbatches keeps each pair together, and the loss can be
normalised by the global number of pairs, global_valid_seqs / 2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
import torch
import torch.nn.functional as F

from reinforge.algorithms.loss_utils import masked_sum, safe_divide
from reinforge.core.config import doc

if TYPE_CHECKING:
    from collections.abc import Mapping


def _non_negative(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value}")


@attrs.define(kw_only=True, frozen=True)
class DPOLossConfig:
    """Settings of `DPOLoss` (the `dpo:` loss options); names follow NeMo-RL's `DPOLossConfig`."""

    reference_policy_kl_penalty: float = doc(
        "beta: scale of the implicit reward beta * log(pi / pi_ref); 0.05-0.5 is usual",
        default=0.05,
        validator=_non_negative,
    )
    preference_loss_weight: float = doc(
        "weight of the preference term -log sigmoid(beta (r_chosen - r_rejected))", default=1.0, validator=_non_negative
    )
    sft_loss_weight: float = doc(
        "weight of an NLL term on the chosen response (anchors its likelihood); 0 disables it",
        default=0.0,
        validator=_non_negative,
    )
    preference_average_log_probs: bool = doc(
        "average the log-ratio over the response's tokens instead of summing (length-normalised DPO)", default=False
    )
    sft_average_log_probs: bool = doc("average the chosen response's NLL over its tokens instead of summing", default=False)

    def __attrs_post_init__(self) -> None:
        if self.preference_loss_weight == 0 and self.sft_loss_weight == 0:
            raise ValueError("preference_loss_weight and sft_loss_weight are both 0, so the loss would always be 0")


class DPOLoss:
    """DPO loss (a `LossFn`) over pairs: rows 2p (chosen) and 2p + 1 (rejected).

    r = sum_t m (log pi_theta - log pi_ref) over the response tokens (m = token_mask), divided by
    the token count with `preference_average_log_probs`.
    L = sum_pairs w_p [preference_loss_weight * -log sigmoid(beta (r_c - r_r)) + sft_loss_weight * NLL(chosen)]
        / (global_valid_seqs / 2),
    where w_p is the chosen row's sample_mask (a pair is expected to carry one mask on both rows).
    Reads `reference_logprobs`, `token_mask` and `sample_mask`. Metrics as NeMo-RL's: rewards_chosen_mean /
    rewards_rejected_mean are the mean log-ratios r (not multiplied by beta), num_valid_samples counts pairs.
    """

    def __init__(self, config: DPOLossConfig | None = None) -> None:
        self.config = config or DPOLossConfig()

    def __call__(
        self,
        logprobs: torch.Tensor,  # [2P, T] log pi_theta, aligned with input_ids
        batch: Mapping[str, Any],
        global_valid_tokens: torch.Tensor,  # scalar (unused: DPO is normalised per pair)
        global_valid_seqs: torch.Tensor,  # scalar: rows, i.e. 2 * pairs
    ) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.config
        rows = logprobs.shape[0]
        if rows % 2:
            raise ValueError(f"DPO needs (chosen, rejected) row pairs; got an odd number of rows ({rows})")
        token_mask = batch["token_mask"].to(logprobs.dtype)  # [2P, T]
        sample_mask = batch["sample_mask"].to(logprobs.dtype)  # [2P]
        reference = batch["reference_logprobs"].to(logprobs.dtype)  # [2P, T]

        num_tokens = token_mask.sum(-1)  # [2P]
        log_ratio = masked_sum(logprobs - reference, token_mask, dim=-1)  # [2P]
        if cfg.preference_average_log_probs:
            log_ratio = safe_divide(log_ratio, num_tokens)
        ratio_chosen, ratio_rejected = log_ratio[0::2], log_ratio[1::2]  # [P], [P]
        beta = cfg.reference_policy_kl_penalty
        margin = beta * (ratio_chosen - ratio_rejected)  # [P]
        preference_loss = F.softplus(-margin)  # [P] == -log sigmoid(margin), stable for large |margin|

        nll_chosen = -masked_sum(logprobs, token_mask, dim=-1)[0::2]  # [P]
        if cfg.sft_average_log_probs:
            nll_chosen = safe_divide(nll_chosen, num_tokens[0::2])

        pair_weight = sample_mask[0::2]  # [P]
        global_pairs = torch.as_tensor(global_valid_seqs, dtype=logprobs.dtype, device=logprobs.device) / 2

        def pair_mean(per_pair: torch.Tensor, weight: torch.Tensor = pair_weight) -> torch.Tensor:
            """Global-batch share of a per-pair quantity."""
            return safe_divide((weight * per_pair).sum(), global_pairs)

        preference_term = pair_mean(preference_loss)
        sft_term = pair_mean(nll_chosen)
        loss = cfg.preference_loss_weight * preference_term + cfg.sft_loss_weight * sft_term

        with torch.no_grad():
            # As NeMo-RL: the "rewards" are the unscaled log-ratios r (the implicit DPO reward is beta * r),
            # the rejected mean is weighted by the rejected rows' mask, and samples are counted in pairs.
            chosen, rejected = ratio_chosen.detach(), ratio_rejected.detach()
            metrics = {
                "loss": loss.item(),
                "preference_loss": preference_term.item(),
                "sft_loss": sft_term.item(),
                "accuracy": pair_mean((chosen > rejected).to(logprobs.dtype)).item(),
                "rewards_chosen_mean": pair_mean(chosen).item(),
                "rewards_rejected_mean": pair_mean(rejected, sample_mask[1::2]).item(),
                "reward_margin": pair_mean(chosen - rejected).item(),  # reinforge's: r_c - r_r, unscaled too
                "num_valid_samples": (sample_mask.sum() / 2).item(),  # pairs
            }
        return loss, metrics
