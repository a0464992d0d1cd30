"""The clipped policy-gradient loss behind GRPO, DAPO, GSPO and REINFORCE/RLOO.

One loss with switches rather than one class per paper: the variants differ only in how the
ratio is formed (token, sequence, forced to 1, absent), how it is clipped, how off-policy
samples are reweighted and how tokens are averaged, and a run changes them in its config.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Literal

import attrs
import torch

from reinforge.algorithms.loss_utils import KL_KINDS, kl_penalty, masked_mean, masked_sum
from reinforge.core.config import doc

if TYPE_CHECKING:
    from collections.abc import Mapping

TRUNCATED_IS_TYPES: tuple[str, ...] = ("tis", "icepop", "seq-mask-tis")
LossReduction = Literal["token_mean", "seq_mean_token_mean", "seq_sum_constant"]
LOSS_REDUCTIONS: tuple[str, ...] = ("token_mean", "seq_mean_token_mean", "seq_sum_constant")


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
    use_cispo: bool = doc(
        "CISPO (MiniMax-M1): loss = -A * sg(clip(r, 1 - ratio_clip_min, 1 + ratio_clip_max)) * log pi; the clipped "
        "ratio only weights the token, so clipped tokens keep their gradient",
        default=False,
    )
    force_on_policy_ratio: bool = doc(
        "ratio = exp(log pi - sg(log pi)) == 1 with the on-policy gradient; only valid with one optimizer step "
        "per rollout, and makes the prev_logprobs pass unnecessary",
        default=False,
    )
    sequence_level_importance_ratios: bool = doc(
        "GSPO: one ratio per sequence, exp(mean_t(log pi - log pi_old)); needs a per-sequence reduction "
        "(token_level_loss=false, or loss_reduction seq_mean_token_mean / seq_sum_constant)",
        default=False,
    )
    token_level_loss: bool = doc(
        "NeMo-RL's switch: true = mean over every valid token of the global batch (loss_reduction token_mean), "
        "false = per-sequence token mean, then mean over sequences (seq_mean_token_mean). An explicit "
        "loss_reduction takes precedence over true (the default); false with another loss_reduction is an error",
        default=True,
    )
    loss_reduction: LossReduction | None = doc(
        "how per-token losses become one number: token_mean (over every valid token of the global batch), "
        "seq_mean_token_mean (token mean per sequence, then mean over sequences) or seq_sum_constant (token "
        "sum per sequence / loss_reduction_constant, then mean over sequences: Dr. GRPO); null = as "
        "token_level_loss says (token_mean by default)",
        default=None,
        validator=_one_of((None, *LOSS_REDUCTIONS)),
    )
    loss_reduction_constant: float | None = doc(
        "the constant seq_sum_constant divides every sequence's token sum by, the same for every sequence "
        "and step (Dr. GRPO: the generation budget, policy.generation.max_new_tokens); required by "
        "seq_sum_constant, an error with any other reduction",
        default=None,
        validator=_positive_or_none,
    )
    use_importance_sampling_correction: bool = doc(
        "reweight tokens by sg(pi_old / pi_gen), correcting for the sampling engine's numerics or stale samples",
        default=False,
    )
    truncated_importance_sampling_type: Literal["tis", "icepop", "seq-mask-tis", None] = doc(
        "truncation of those weights: null, 'tis' (clamp to [min, max]), 'icepop' (zero tokens outside [min, max]) "
        "or 'seq-mask-tis' (zero whole sequences whose geometric-mean weight is outside [min, max]; kept "
        "sequences keep their untruncated token weights)",
        default=None,
        validator=_one_of((None, *TRUNCATED_IS_TYPES)),
    )
    truncated_importance_sampling_ratio_min: float = doc(
        "lower bound of the truncation (tis: clamp floor; icepop, seq-mask-tis: keep threshold)",
        default=0.0,
        validator=_non_negative,
    )
    truncated_importance_sampling_ratio_max: float | None = doc(
        "upper bound of the truncation; required when a truncation type is set "
        "(NeMo-RL: truncated_importance_sampling_ratio)",
        default=None,
    )
    use_on_policy_kl_approximation: bool = doc(
        "weight the per-token KL by pi_theta / pi_gen (with its gradient) instead of 1, so the KL is estimated "
        "for the current policy from the generator's samples; needs generation logprobs and beta > 0",
        default=False,
    )

    @property
    def reduction(self) -> str:
        """The reduction in effect: `loss_reduction`, else what `token_level_loss` stands for (token_mean by default)."""
        if self.loss_reduction is not None:
            return self.loss_reduction
        return "token_mean" if self.token_level_loss else "seq_mean_token_mean"

    def __attrs_post_init__(self) -> None:
        self._check_reduction()
        if self.disable_ppo_ratio and self.force_on_policy_ratio:
            raise ValueError("disable_ppo_ratio and force_on_policy_ratio exclude each other; set one of them")
        if self.ratio_clip_c is not None and (self.disable_ppo_ratio or self.force_on_policy_ratio):
            switch = "disable_ppo_ratio" if self.disable_ppo_ratio else "force_on_policy_ratio"
            raise ValueError(
                f"ratio_clip_c ({self.ratio_clip_c}) would have no effect under {switch}: dual clipping bounds the "
                "loss of a ratio far above 1, and there is no such ratio; set ratio_clip_c to null"
            )
        if self.use_cispo:
            self._check_cispo()
        if self.use_on_policy_kl_approximation and self.reference_policy_kl_penalty == 0:
            raise ValueError(
                "use_on_policy_kl_approximation reweights the KL penalty, but reference_policy_kl_penalty is 0 so "
                "there is none; set a KL penalty or drop the option"
            )
        if self.disable_ppo_ratio and self.sequence_level_importance_ratios:
            raise ValueError(
                "disable_ppo_ratio uses no ratio, so sequence_level_importance_ratios cannot apply; set one of them"
            )
        if self.sequence_level_importance_ratios and self.reduction == "token_mean":
            raise ValueError(
                "sequence_level_importance_ratios (GSPO) needs token_level_loss=False (or loss_reduction "
                "seq_mean_token_mean / seq_sum_constant): the ratio is per sequence, so the loss must be reduced "
                "per sequence"
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
            if self.truncated_importance_sampling_type == "seq-mask-tis" and self.sequence_level_importance_ratios:
                raise ValueError(
                    "seq-mask-tis masks sequences but keeps token-level weights, so it cannot be combined with "
                    "sequence_level_importance_ratios (GSPO); use 'tis' or 'icepop' there"
                )

    def _check_reduction(self) -> None:
        # token_level_loss=true is also the default, so it cannot be told from "not set" and yields to an explicit
        # loss_reduction; false is always someone's choice, and contradicting it is an error.
        if not self.token_level_loss and self.loss_reduction not in (None, "seq_mean_token_mean"):
            raise ValueError(
                f"token_level_loss=false means loss_reduction seq_mean_token_mean, but loss_reduction is "
                f"{self.loss_reduction}; drop token_level_loss (or set it to true) and keep loss_reduction"
            )
        if self.reduction == "seq_sum_constant" and self.loss_reduction_constant is None:
            raise ValueError(
                "loss_reduction seq_sum_constant needs loss_reduction_constant, the number each sequence's token sum "
                "is divided by (Dr. GRPO: the generation budget, policy.generation.max_new_tokens)"
            )
        if self.reduction != "seq_sum_constant" and self.loss_reduction_constant is not None:
            raise ValueError(
                f"loss_reduction_constant ({self.loss_reduction_constant}) is used only by loss_reduction "
                f"seq_sum_constant, but the reduction is {self.reduction}; drop it or set loss_reduction"
            )

    def _check_cispo(self) -> None:
        conflicts = {
            "disable_ppo_ratio": "CISPO weights tokens by the clipped ratio, which disable_ppo_ratio removes",
            "force_on_policy_ratio": "a ratio forced to 1 leaves CISPO nothing to clip",
            "sequence_level_importance_ratios": "CISPO clips token-level ratios",
        }
        for name, why in conflicts.items():
            if getattr(self, name):
                raise ValueError(f"use_cispo and {name} exclude each other: {why}; set one of them")
        if self.ratio_clip_c is not None:
            raise ValueError("use_cispo replaces the clipped surrogate, so dual clipping (ratio_clip_c) cannot apply")
        if self.reduction != "token_mean":
            raise ValueError(
                f"use_cispo needs token_level_loss=true / loss_reduction token_mean (CISPO averages over all tokens "
                f"of the batch), but the reduction is {self.reduction}"
            )


class ClippedPGLoss:
    """PPO-style clipped policy gradient with an optional KL penalty to the reference policy (a `LossFn`).

    Per valid token (mask m = token_mask * sample_mask), with r = exp(log pi_theta - log pi_old):
    l = max(-A r, -A clip(r, 1 - eps_low, 1 + eps_high)); with dual clip, l = min(l, -c A) where A < 0;
    with CISPO, l = -A sg(clip(r)) log pi_theta; with REINFORCE, l = -A log pi_theta.
    The importance-sampling correction multiplies l by w = sg(pi_old / pi_gen) (truncated by
    tis / icepop / seq-mask-tis). The loss is sum(m l) / N_tok + beta sum(m KL) / N_tok over the
    *global* token count N_tok (token_mean); or, per sequence, the token mean (seq_mean_token_mean)
    or the token sum / C (seq_sum_constant, C = loss_reduction_constant), summed over sequences
    weighted by sample_mask and divided by the *global* sequence count N_seq. Either way microbatch
    losses add up to the loss of the whole batch.

    Reads `advantages [B, T]` (or [B]), `prev_logprobs` (unless the ratio is forced or disabled, or the
    loss was made by `with_current_as_previous`),
    `generation_logprobs` (for the importance-sampling correction, the on-policy KL approximation
    and the mismatch metrics), `reference_logprobs` (only when beta > 0), `token_mask` and `sample_mask`.
    Whatever sits outside token_mask (padding, prompt) is replaced by 0 first, so it can reach
    neither the loss nor, as 0 * inf, the gradient.
    """

    def __init__(self, config: ClippedPGLossConfig | None = None, *, current_as_previous: bool = False) -> None:
        self.config = config or ClippedPGLossConfig()
        # Set by `with_current_as_previous`: the caller guarantees that the weights being trained are the
        # ones a previous-policy pass would have used (one optimizer step per rollout batch).
        self.current_as_previous = current_as_previous

    def with_current_as_previous(self) -> ClippedPGLoss:
        """This loss, taking log pi_old = sg(log pi_theta) from the training forward instead of `prev_logprobs`.

        Only valid when the batch gets exactly one optimizer step: the previous-policy pass would then
        score it with the very weights the training forward uses, so its logprobs equal the current
        ones (up to round-off) and the ratio is 1 by construction. The loss value and gradient are those
        of the pass path; the ratio metrics read exactly 1, and the mismatch metrics
        (token_mult_prob_error, is_weight) compare the generator with the training forward's logprobs.
        Unlike `force_on_policy_ratio` this is not a loss variant: CISPO, GSPO and dual clip keep
        their meaning (a ratio of 1 is simply inside every clip range).
        """
        loss = copy.copy(self)
        loss.current_as_previous = True
        return loss

    def __call__(
        self,
        logprobs: torch.Tensor,  # [B, T] log pi_theta, aligned with input_ids
        batch: Mapping[str, Any],
        global_valid_tokens: torch.Tensor,  # scalar
        global_valid_seqs: torch.Tensor,  # scalar
    ) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.config
        reduction = cfg.reduction
        token_mask = batch["token_mask"].to(logprobs.dtype)  # [B, T]
        sample_mask = batch["sample_mask"].to(logprobs.dtype)  # [B]
        mask = token_mask * sample_mask[:, None]  # [B, T]
        scored = token_mask != 0  # [B, T]

        def column(values: torch.Tensor) -> torch.Tensor:  # [B, T], 0 outside the response tokens
            values = values.to(logprobs.dtype)
            return torch.where(scored, values, torch.zeros_like(values))

        logprobs = column(logprobs)
        advantages = batch["advantages"].to(logprobs.dtype)
        if advantages.dim() == 1:
            advantages = advantages[:, None].expand_as(logprobs)  # [B, T]
        advantages = column(advantages)
        if (
            cfg.force_on_policy_ratio
            or self.current_as_previous
            or (cfg.disable_ppo_ratio and "prev_logprobs" not in batch)
        ):
            prev_logprobs = logprobs.detach()  # [B, T]; forced or one step per batch: no previous-policy pass needed
        else:
            prev_logprobs = column(batch["prev_logprobs"])
        has_generation = "generation_logprobs" in batch
        generation_logprobs = column(batch["generation_logprobs"]) if has_generation else None

        def reduce(per_token: torch.Tensor) -> torch.Tensor:
            """Global-batch share of a per-token quantity under the configured reduction."""
            if reduction == "token_mean":
                return masked_mean(per_token, mask, global_normalization_factor=global_valid_tokens)
            if reduction == "seq_sum_constant":
                per_sequence = masked_sum(per_token, token_mask, dim=-1) / cfg.loss_reduction_constant  # [B]
            else:
                per_sequence = masked_mean(per_token, token_mask, dim=-1)  # [B]
            return masked_mean(per_sequence, sample_mask, global_normalization_factor=global_valid_seqs)

        def token_mean(per_token: torch.Tensor) -> float:
            """Global-batch share of a per-token metric (always a token mean)."""
            return masked_mean(per_token.detach(), mask, global_normalization_factor=global_valid_tokens).item()

        def sequence_mean(per_sequence: torch.Tensor) -> float:
            """Global-batch share of a per-sequence metric."""
            return masked_mean(per_sequence.detach(), sample_mask, global_normalization_factor=global_valid_seqs).item()

        per_token_loss, ratios, ratios_clamped, clipped = self._surrogate(logprobs, prev_logprobs, advantages, token_mask)

        # --- off-policy importance-sampling correction ------------------------------------
        metrics: dict[str, float] = {}
        is_weights = None
        if generation_logprobs is not None:
            is_weights = self._importance_weights(prev_logprobs, generation_logprobs, token_mask)  # [B, T]
        if cfg.use_importance_sampling_correction:
            if is_weights is None or generation_logprobs is None:
                raise KeyError("use_importance_sampling_correction needs batch['generation_logprobs']")
            is_weights, out_of_bounds = self._truncate(is_weights, prev_logprobs, generation_logprobs, token_mask)
            if out_of_bounds is not None:
                per_sequence = cfg.truncated_importance_sampling_type == "seq-mask-tis"
                metrics["is_oob_ratio"] = sequence_mean(out_of_bounds) if per_sequence else token_mean(out_of_bounds)
            per_token_loss = per_token_loss * is_weights

        pg_loss = reduce(per_token_loss)

        # --- KL penalty to the reference policy ---------------------------------------------
        beta = cfg.reference_policy_kl_penalty
        if beta > 0:
            if cfg.use_on_policy_kl_approximation and generation_logprobs is None:
                raise KeyError("use_on_policy_kl_approximation needs batch['generation_logprobs']")
            kl = kl_penalty(
                logprobs,
                column(batch["reference_logprobs"]),
                kind=cfg.reference_policy_kl_type,
                input_clamp=cfg.kl_input_clamp_value,
                output_clamp=cfg.kl_output_clamp_value,
                sampling_logprobs=generation_logprobs if cfg.use_on_policy_kl_approximation else None,
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
        if ratios is not None and ratios_clamped is not None and clipped is not None:
            # REINFORCE has no ratio: NeMo-RL logs mean log pi as probs_ratio there; reinforge logs none
            metrics["clip_fraction"] = token_mean(clipped.to(logprobs.dtype))
            metrics["probs_ratio"] = token_mean(ratios)
            metrics["probs_ratio_clamped"] = token_mean(ratios_clamped)
            metrics.update(_min_max("probs_ratio", ratios.detach(), valid))
            metrics.update(_min_max("probs_ratio_clamped", ratios_clamped.detach(), valid))
        if is_weights is not None:
            metrics["is_weight"] = token_mean(is_weights)
            metrics.update(_min_max("is_weight", is_weights.detach(), valid))
        if generation_logprobs is not None:
            metrics["token_mult_prob_error"] = token_mean((prev_logprobs - generation_logprobs).abs().exp())
            # entropy of pi_theta estimated on the engine's samples: -E_gen[(pi_theta / pi_gen) log pi_theta]
            detached = logprobs.detach()
            metrics["approx_entropy"] = token_mean(-(detached - generation_logprobs).exp() * detached)
        # what the sequence-level denominator counts (rows without tokens included), as in NeMo-RL
        metrics["num_valid_samples"] = sample_mask.sum().item()
        return loss, metrics

    def _surrogate(
        self,
        logprobs: torch.Tensor,  # [B, T]
        prev_logprobs: torch.Tensor,  # [B, T]
        advantages: torch.Tensor,  # [B, T]
        token_mask: torch.Tensor,  # [B, T]
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """Per-token policy-gradient loss, plus the ratio, the clamped ratio and the clipped tokens (None: REINFORCE).

        `clipped` marks tokens whose gradient the clipping cut (PPO, dual clip); under CISPO, whose
        weight it clipped (CISPO keeps their gradient).
        """
        cfg = self.config
        if cfg.disable_ppo_ratio:
            return -advantages * logprobs, None, None, None
        if cfg.force_on_policy_ratio:
            log_ratios = logprobs - logprobs.detach()  # value 0, gradient of log pi
        else:
            log_ratios = logprobs - prev_logprobs  # [B, T]
        if cfg.sequence_level_importance_ratios:
            seq_log_ratio = masked_mean(log_ratios, token_mask, dim=-1)  # [B]
            ratios = seq_log_ratio.exp()[:, None].expand_as(logprobs)  # [B, T]
        else:
            ratios = log_ratios.exp()  # [B, T]
        ratios_clamped = ratios.clamp(1.0 - cfg.ratio_clip_min, 1.0 + cfg.ratio_clip_max)
        if cfg.use_cispo:
            per_token_loss = -advantages * ratios_clamped.detach() * logprobs
            return per_token_loss, ratios, ratios_clamped, ratios.detach() != ratios_clamped.detach()
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
        return per_token_loss, ratios, ratios_clamped, clipped

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

    def _truncate(
        self,
        weights: torch.Tensor,  # [B, T]
        prev_logprobs: torch.Tensor,  # [B, T]
        generation_logprobs: torch.Tensor,  # [B, T]
        token_mask: torch.Tensor,  # [B, T]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Apply the truncation; returns the weights and what fell out of [min, max] (as 0/1).

        The out-of-bounds marks are per token ([B, T]) for tis and icepop, per sequence ([B]) for
        seq-mask-tis; None without truncation.
        """
        cfg = self.config
        low, high = cfg.truncated_importance_sampling_ratio_min, cfg.truncated_importance_sampling_ratio_max
        kind = cfg.truncated_importance_sampling_type
        if kind is None:
            return weights, None
        assert high is not None  # checked by the config
        if kind == "seq-mask-tis":
            log_w = torch.nan_to_num((prev_logprobs - generation_logprobs).detach(), nan=0.0, posinf=0.0, neginf=0.0)
            geometric_mean = masked_mean(log_w, token_mask, dim=-1).exp()  # [B]
            kept = (geometric_mean >= low) & (geometric_mean <= high)  # [B]
            return weights * kept[:, None].to(weights.dtype), (~kept).to(weights.dtype)
        inside = (weights >= low) & (weights <= high)  # [B, T]
        if kind == "tis":
            return weights.clamp(low, high), (~inside).to(weights.dtype)
        return torch.where(inside, weights, torch.zeros_like(weights)), (~inside).to(weights.dtype)


def _min_max(name: str, values: torch.Tensor, valid: torch.Tensor) -> dict[str, float]:
    """`name_min` / `name_max` over valid entries; +inf / -inf (the reductions' identities) when none."""
    selected = values[valid]
    if selected.numel() == 0:
        return {f"{name}_min": float("inf"), f"{name}_max": float("-inf")}
    return {f"{name}_min": selected.min().item(), f"{name}_max": selected.max().item()}
