"""The clipped policy-gradient loss behind GRPO, DAPO, GSPO and REINFORCE/RLOO.

One loss with switches rather than one class per paper: the variants differ only in how the
ratio is formed (token, sequence, forced to 1, absent), how it is clipped, how off-policy
samples are reweighted and how tokens are averaged, and a run changes them in its config.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import attrs
import torch

from reinforge.algorithms.loss_utils import KL_KINDS, kl_penalty, masked_mean, masked_sum
from reinforge.core.config import doc

if TYPE_CHECKING:
    from collections.abc import Mapping

TRUNCATED_IS_TYPES: tuple[str, ...] = ("tis", "icepop")


def _non_negative(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value}")


def _positive_or_none(instance: Any, attribute: attrs.Attribute, value: float | None) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"{attribute.name} must be > 0 (or null for no clamp), got {value}")


def _clip_min(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    if not 0 <= value < 1:
        raise ValueError(f"ratio_clip_min must be in [0, 1) so that 1 - ratio_clip_min > 0, got {value}")


def _dual_clip(instance: Any, attribute: attrs.Attribute, value: float | None) -> None:
    if value is not None and value <= 1:
        raise ValueError(f"ratio_clip_c must be > 1 (usually 3) or null to disable dual clipping, got {value}")


def _one_of(choices: tuple[str | None, ...]) -> Any:
    def check(instance: Any, attribute: attrs.Attribute, value: str | None) -> None:
        if value not in choices:
            names = ", ".join("null" if c is None else repr(c) for c in choices)
            raise ValueError(f"{attribute.name} must be one of {names}, got {value!r}")

    return check


@attrs.define(kw_only=True, frozen=True)
class ClippedPGLossConfig:
    """Settings of `ClippedPGLoss` (the `loss_fn:` section); names follow NeMo-RL's `ClippedPGLossConfig`."""

    ratio_clip_min: float = doc(
        "epsilon_low: the ratio is clipped below at 1 - ratio_clip_min", default=0.2, validator=_clip_min
    )
    ratio_clip_max: float = doc(
        "epsilon_high: the ratio is clipped above at 1 + ratio_clip_max (0.28 = DAPO clip-higher)",
        default=0.2,
        validator=_non_negative,
    )
    ratio_clip_c: float | None = doc(
        "dual clip c (> 1, ~3): for negative advantages the loss is capped at -c * A (null = off)",
        default=None,
        validator=_dual_clip,
    )
    reference_policy_kl_penalty: float = doc(
        "beta: weight of the KL(pi || pi_ref) penalty; 0 skips the reference model altogether",
        default=0.0,
        validator=_non_negative,
    )
    reference_policy_kl_type: Literal["k1", "k2", "k3"] = doc(
        "KL estimator (Schulman's k1, k2 or k3)", default="k3", validator=_one_of(KL_KINDS)
    )
    kl_input_clamp_value: float | None = doc(
        "log(pi_ref / pi) is clamped to +-this before the estimator (null = no clamp)",
        default=20.0,
        validator=_positive_or_none,
    )
    kl_output_clamp_value: float | None = doc(
        "the per-token KL estimate is clamped to +-this (null = no clamp)", default=10.0, validator=_positive_or_none
    )
    disable_ppo_ratio: bool = doc("REINFORCE/RLOO: loss = -A * log pi, no ratio and no clipping", default=False)
    force_on_policy_ratio: bool = doc(
        "ratio = exp(log pi - sg(log pi)) == 1 with the on-policy gradient; only valid with one optimizer step "
        "per rollout, and makes the prev_logprobs pass unnecessary",
        default=False,
    )
    sequence_level_importance_ratios: bool = doc(
        "GSPO: one ratio per sequence, exp(mean_t(log pi - log pi_old)); needs token_level_loss=false",
        default=False,
    )
    token_level_loss: bool = doc(
        "true: mean over every valid token of the global batch; false: mean per sequence, then over sequences",
        default=True,
    )
    use_importance_sampling_correction: bool = doc(
        "reweight tokens by sg(pi_old / pi_gen), correcting for the sampling engine's numerics or stale samples",
        default=False,
    )
    truncated_importance_sampling_type: Literal["tis", "icepop", None] = doc(
        "truncation of those weights: null, 'tis' (clamp to [min, max]) or 'icepop' (zero tokens outside [min, max])",
        default=None,
        validator=_one_of((None, *TRUNCATED_IS_TYPES)),
    )
    truncated_importance_sampling_ratio_min: float = doc(
        "lower bound of the truncation (tis: clamp floor; icepop: keep threshold)", default=0.0, validator=_non_negative
    )
    truncated_importance_sampling_ratio_max: float | None = doc(
        "upper bound of the truncation; required when a truncation type is set", default=None
    )

    def __attrs_post_init__(self) -> None:
        if self.disable_ppo_ratio and self.force_on_policy_ratio:
            raise ValueError("disable_ppo_ratio and force_on_policy_ratio exclude each other; set one of them")
        if self.disable_ppo_ratio and self.sequence_level_importance_ratios:
            raise ValueError(
                "disable_ppo_ratio uses no ratio, so sequence_level_importance_ratios cannot apply; set one of them"
            )
        if self.sequence_level_importance_ratios and self.token_level_loss:
            raise ValueError(
                "sequence_level_importance_ratios (GSPO) needs token_level_loss=False: the ratio is per sequence, "
                "so the loss must be averaged per sequence"
            )
        if self.truncated_importance_sampling_type is not None:
            if not self.use_importance_sampling_correction:
                raise ValueError(
                    "truncated_importance_sampling_type is set but use_importance_sampling_correction is false; "
                    "enable the correction or drop the truncation type"
                )
            high = self.truncated_importance_sampling_ratio_max
            if high is None:
                raise ValueError(
                    "truncated_importance_sampling_ratio_max is required when truncated_importance_sampling_type "
                    f"is {self.truncated_importance_sampling_type!r}"
                )
            if high <= self.truncated_importance_sampling_ratio_min:
                raise ValueError(
                    f"truncated_importance_sampling_ratio_max ({high}) must exceed "
                    f"truncated_importance_sampling_ratio_min ({self.truncated_importance_sampling_ratio_min})"
                )


class ClippedPGLoss:
    """PPO-style clipped policy gradient with an optional KL penalty to the reference policy (a `LossFn`).

    Per valid token (mask m = token_mask * sample_mask), with r = exp(log pi_theta - log pi_old):
    l = max(-A r, -A clip(r, 1 - eps_low, 1 + eps_high)); with dual clip, l = min(l, -c A) where A < 0.
    The loss is sum(m l) / N_tok + beta sum(m KL) / N_tok over the *global* token count N_tok
    (or, with token_level_loss=False, the per-sequence token mean summed over sequences / N_seq),
    so microbatch losses add up to the loss of the whole batch.

    Reads `advantages [B, T]` (or [B]), `prev_logprobs` (unless the ratio is forced or disabled),
    `generation_logprobs` (for the importance-sampling correction and the mismatch metrics),
    `reference_logprobs` (only when beta > 0), `token_mask` and `sample_mask`.
    """

    def __init__(self, config: ClippedPGLossConfig | None = None) -> None:
        self.config = config or ClippedPGLossConfig()

    def __call__(
        self,
        logprobs: torch.Tensor,  # [B, T] log pi_theta, aligned with input_ids
        batch: Mapping[str, Any],
        global_valid_tokens: torch.Tensor,  # scalar
        global_valid_seqs: torch.Tensor,  # scalar
    ) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.config
        token_mask = batch["token_mask"].to(logprobs.dtype)  # [B, T]
        sample_mask = batch["sample_mask"].to(logprobs.dtype)  # [B]
        mask = token_mask * sample_mask[:, None]  # [B, T]
        advantages = batch["advantages"].to(logprobs.dtype)
        if advantages.dim() == 1:
            advantages = advantages[:, None].expand_as(logprobs)  # [B, T]

        if cfg.force_on_policy_ratio or (cfg.disable_ppo_ratio and "prev_logprobs" not in batch):
            prev_logprobs = logprobs.detach()  # [B, T]
        else:
            prev_logprobs = batch["prev_logprobs"].to(logprobs.dtype)
        has_generation = "generation_logprobs" in batch
        generation_logprobs = batch["generation_logprobs"].to(logprobs.dtype) if has_generation else None

        def reduce(per_token: torch.Tensor) -> torch.Tensor:
            """Global-batch share of a per-token quantity under the configured reduction."""
            if cfg.token_level_loss:
                return masked_mean(per_token, mask, global_normalization_factor=global_valid_tokens)
            per_sequence = masked_mean(per_token, token_mask, dim=-1)  # [B]
            return masked_mean(per_sequence, sample_mask, global_normalization_factor=global_valid_seqs)

        def token_mean(per_token: torch.Tensor) -> float:
            """Global-batch share of a per-token metric (always a token mean)."""
            return masked_mean(per_token.detach(), mask, global_normalization_factor=global_valid_tokens).item()

        # --- ratio and clipped surrogate -------------------------------------------------
        if cfg.disable_ppo_ratio:
            ratios = torch.ones_like(logprobs).detach()  # for the metrics only
            ratios_clamped = ratios
            per_token_loss = -advantages * logprobs  # [B, T]
            clipped = torch.zeros_like(mask, dtype=torch.bool)
        else:
            if cfg.force_on_policy_ratio:
                log_ratios = logprobs - logprobs.detach()  # value 0, gradient of log pi
            else:
                log_ratios = logprobs - prev_logprobs  # [B, T]
            # padded columns may hold anything; exp of garbage there would turn masked gradients into NaN
            log_ratios = torch.where(token_mask != 0, log_ratios, torch.zeros_like(log_ratios))
            if cfg.sequence_level_importance_ratios:
                seq_log_ratio = masked_mean(log_ratios, token_mask, dim=-1)  # [B]
                ratios = seq_log_ratio.exp()[:, None].expand_as(logprobs)  # [B, T]
            else:
                ratios = log_ratios.exp()  # [B, T]
            ratios_clamped = ratios.clamp(1.0 - cfg.ratio_clip_min, 1.0 + cfg.ratio_clip_max)
            unclipped_loss = -advantages * ratios
            clipped_loss = -advantages * ratios_clamped
            per_token_loss = torch.maximum(unclipped_loss, clipped_loss)
            # the clipped branch is active (gradient cut) where it is strictly larger
            clipped = clipped_loss.detach() > unclipped_loss.detach()
            if cfg.ratio_clip_c is not None:
                dual_cap = -cfg.ratio_clip_c * advantages
                dual_active = (advantages < 0) & (per_token_loss.detach() > dual_cap)
                per_token_loss = torch.where(dual_active, dual_cap, per_token_loss)
                clipped = clipped | dual_active

        # --- off-policy importance-sampling correction ------------------------------------
        metrics: dict[str, float] = {}
        if has_generation:
            is_weights = self._importance_weights(prev_logprobs, generation_logprobs, token_mask)  # [B, T]
        else:
            is_weights = None
        if cfg.use_importance_sampling_correction:
            if is_weights is None:
                raise KeyError("use_importance_sampling_correction needs batch['generation_logprobs']")
            is_weights, kept = self._truncate(is_weights)
            if kept is not None:
                metrics["is_oob_ratio"] = token_mean(1.0 - kept.to(logprobs.dtype))
            per_token_loss = per_token_loss * is_weights

        pg_loss = reduce(per_token_loss)

        # --- KL penalty to the reference policy ---------------------------------------------
        beta = cfg.reference_policy_kl_penalty
        if beta > 0:
            kl = kl_penalty(
                logprobs,
                batch["reference_logprobs"].to(logprobs.dtype),
                kind=cfg.reference_policy_kl_type,
                input_clamp=cfg.kl_input_clamp_value,
                output_clamp=cfg.kl_output_clamp_value,
            )
            kl_term = reduce(kl)
            loss = pg_loss + beta * kl_term
            metrics["kl_penalty"] = kl_term.item()
        else:
            loss = pg_loss

        # --- metrics: summable shares of global means, plus _min/_max ------------------------
        valid = mask != 0
        metrics["loss"] = loss.item()
        metrics["pg_loss"] = pg_loss.item()
        metrics["clip_fraction"] = token_mean(clipped.to(logprobs.dtype))
        metrics["probs_ratio"] = token_mean(ratios)
        metrics["probs_ratio_clamped"] = token_mean(ratios_clamped)
        metrics.update(_min_max("probs_ratio", ratios.detach(), valid))
        if is_weights is not None:
            metrics["is_weight"] = token_mean(is_weights)
            metrics.update(_min_max("is_weight", is_weights.detach(), valid))
        if generation_logprobs is not None:
            metrics["token_mult_prob_error"] = token_mean((prev_logprobs - generation_logprobs).abs().exp())
            # entropy of pi_theta estimated on the engine's samples: -E_gen[(pi_theta / pi_gen) log pi_theta]
            detached = logprobs.detach()
            metrics["approx_entropy"] = token_mean(-(detached - generation_logprobs).exp() * detached)
        has_tokens = (token_mask.sum(-1) > 0).to(logprobs.dtype)
        metrics["num_valid_samples"] = (sample_mask * has_tokens).sum().item()
        return loss, metrics

    def _importance_weights(
        self,
        prev_logprobs: torch.Tensor,  # [B, T]
        generation_logprobs: torch.Tensor,  # [B, T]
        token_mask: torch.Tensor,  # [B, T]
    ) -> torch.Tensor:  # [B, T], detached; non-finite -> 0
        """sg(pi_old / pi_gen) per token, or per sequence (product over its tokens) under GSPO."""
        log_w = (prev_logprobs - generation_logprobs).detach()
        if self.config.sequence_level_importance_ratios:
            log_w = masked_sum(log_w, token_mask, dim=-1)[:, None].expand_as(prev_logprobs)
        return torch.nan_to_num(log_w.exp(), nan=0.0, posinf=0.0, neginf=0.0)

    def _truncate(self, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Apply TIS (clamp) or ICEPOP (drop out-of-range tokens); returns the weights and the kept mask."""
        cfg = self.config
        low, high = cfg.truncated_importance_sampling_ratio_min, cfg.truncated_importance_sampling_ratio_max
        if cfg.truncated_importance_sampling_type == "tis":
            return weights.clamp(low, high), None
        if cfg.truncated_importance_sampling_type == "icepop":
            kept = (weights >= low) & (weights <= high)
            return torch.where(kept, weights, torch.zeros_like(weights)), kept
        return weights, None


def _min_max(name: str, values: torch.Tensor, valid: torch.Tensor) -> dict[str, float]:
    """`name_min` / `name_max` over valid entries; +inf / -inf (the reductions' identities) when none."""
    selected = values[valid]
    if selected.numel() == 0:
        return {f"{name}_min": float("inf"), f"{name}_max": float("-inf")}
    return {f"{name}_min": selected.min().item(), f"{name}_max": selected.max().item()}
