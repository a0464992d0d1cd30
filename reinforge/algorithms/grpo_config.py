"""The GRPO run config: the `grpo:` and `loss_fn:` sections plus the shared ones."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import attrs
from attrs import validators as v

from reinforge.algorithms.losses_pg import ClippedPGLossConfig
from reinforge.algorithms.rewards import RewardScalingConfig, RewardShapingConfig
from reinforge.core.config import doc, plugin_options
from reinforge.core.run_config import (
    CheckpointingConfig,
    ClusterConfig,
    DataConfig,
    EnvConfig,
    LoggerConfig,
    PolicyConfig,
    async_grpo_cluster_refusal,
    check_seed,
)

_positive = v.gt(0)
_optional_positive = v.optional(v.gt(0))


def _check_group_size(config: GRPOConfig, attribute: attrs.Attribute, value: int) -> None:
    """A group of one sample is its own baseline (leave-one-out has nobody left; the group mean is the sample):
    every advantage is 0 and the run would train nothing, whatever the normalisation."""
    if value < 2:
        raise ValueError(
            f"must be >= 2: with {value} response per prompt every advantage is 0 (the leave-one-out baseline needs "
            "at least 2 samples per prompt, and a group mean of one sample is its own reward), so the run would train "
            "nothing; set grpo.num_generations_per_prompt to 2 or more"
        )


def _check_age(config: AsyncGRPOConfig, attribute: attrs.Attribute, value: int) -> None:
    if value < 0:
        raise ValueError(
            f"grpo.async_grpo.max_trajectory_age_steps must be >= 0, got {value}: it is how many training steps "
            "older than the trainer's weights a group's generating weights may be (0 = synchronous, 1 = one step off)"
        )


@attrs.define(kw_only=True, frozen=True)
class AsyncGRPOConfig:
    """Asynchronous GRPO (NeMo-RL's `grpo.async_grpo`): a producer generates the next steps' groups while a step trains.

    Staleness is bounded by admission: the producer starts a step's groups only with weights at most
    `max_trajectory_age_steps` training steps older than the weights that train them; nothing is discarded.
    """

    enabled: bool = doc("generate the next steps' rollouts while the current step trains (local executor)", default=False)
    max_trajectory_age_steps: int = doc(
        "how many training steps older than the trained weights a group's generating weights may be "
        "(0 = synchronous: the same rollouts as grpo.async_grpo.enabled=false; 1 = one step off)",
        default=1,
        validator=_check_age,
    )


def async_grpo_refusals(grpo: GRPOConfig, loss: ClippedPGLossConfig, cluster: ClusterConfig | None = None) -> list[str]:
    """Why `grpo.async_grpo` cannot run with these settings (one paragraph each; empty when it can).

    Checked at config load (`GRPORunConfig`) and again by `GRPO(...)` for runs built in Python.
    """
    settings = grpo.async_grpo
    if not settings.enabled:
        return []
    age = settings.max_trajectory_age_steps
    found = []
    if age >= 1 and not loss.use_importance_sampling_correction:
        found.append(
            f"grpo.async_grpo.enabled with grpo.async_grpo.max_trajectory_age_steps={age} trains on groups generated "
            "by older weights, which needs the importance-sampling correction (training collapses without it, "
            "NeMo-RL PR #1098); set loss_fn.use_importance_sampling_correction=true (e.g. with "
            "loss_fn.truncated_importance_sampling_type=tis and loss_fn.truncated_importance_sampling_ratio_max=2.0), "
            "or grpo.async_grpo.max_trajectory_age_steps=0"
        )
    if grpo.use_dynamic_sampling:
        found.append(
            "grpo.async_grpo.enabled with grpo.use_dynamic_sampling is not supported yet: dynamic sampling draws "
            "extra prompts from the loader mid-step, while the asynchronous producer reads prompts ahead of it; "
            "turn one of them off"
        )
    if loss.force_on_policy_ratio:
        found.append(
            "grpo.async_grpo.enabled with loss_fn.force_on_policy_ratio: a forced ratio asserts that the samples are "
            "on-policy, which asynchronous groups are not; turn loss_fn.force_on_policy_ratio off"
        )
    if cluster is not None and (refusal := async_grpo_cluster_refusal(cluster)):
        found.append(refusal)
    return found


@attrs.define(kw_only=True, frozen=True)
class GRPOConfig:
    num_prompts_per_step: int = doc("prompts per step", default=8, validator=_positive)
    num_generations_per_prompt: int = doc("responses per prompt (G, at least 2)", default=4, validator=_check_group_size)
    max_num_steps: int = doc("training steps", default=100, validator=_positive)
    max_rollout_turns: int = doc("environment turns per rollout (1 = single turn)", default=1, validator=_positive)
    multi_turn_reward: Literal["sum", "last"] = doc(
        "a multi-turn rollout's reward: sum (of every turn's reward) or last (the final turn's only)",
        default="sum",
        validator=v.in_(("sum", "last")),
    )
    advantage_estimator: str = doc(
        "how rewards become advantages: grpo, rloo, dr_grpo, reinforce_pp or a plugin's estimator "
        "(`reinforge plugins list --kind advantage_estimator`)",
        default="grpo",
    )
    advantage_estimator_cfg: Any = plugin_options(
        "advantage_estimator", "advantage_estimator", "options of the chosen advantage estimator (null = its defaults)"
    )
    normalize_rewards: bool = doc("grpo estimator: divide advantages by the group's reward std", default=True)
    use_leave_one_out_baseline: bool = doc(
        "grpo estimator: baseline = mean of the other G-1 rewards (else the group mean)", default=True
    )
    advantage_clip_low: float | None = doc("clamp advantages below, whichever estimator (null = off)", default=None)
    advantage_clip_high: float | None = doc("clamp advantages above, whichever estimator (null = off)", default=None)
    overlong_filtering: bool = doc("truncated responses get no loss (they still count in baselines)", default=False)
    use_dynamic_sampling: bool = doc("DAPO: drop zero-variance groups and generate more until the batch is full", default=False)
    dynamic_sampling_max_gen_batches: int = doc("generation rounds allowed per step with dynamic sampling", default=10, validator=_positive)
    reward_shaping: RewardShapingConfig = doc("DAPO overlong reward shaping", factory=RewardShapingConfig)
    reward_scaling: RewardScalingConfig = doc("clamp-and-map reward scaling", factory=RewardScalingConfig)
    val_period: int = doc("validate every N steps (0 = never)", default=10, validator=v.ge(0))
    val_at_start: bool = doc("validate before the first step", default=False)
    val_at_end: bool = doc("validate after the last step", default=True)
    max_val_samples: int | None = doc("validation problems used (null = all)", default=None, validator=_optional_positive)
    val_num_generations_per_prompt: int = doc("samples per validation problem (k of pass@k / avg@k)", default=1, validator=_positive)
    val_temperature: float | None = doc("validation sampling temperature (null = the training one; 0 = greedy)", default=None)
    skip_redundant_logprob_pass: bool = doc(
        "when a step's rollouts make exactly one optimizer step (prompts x G = policy.train_global_batch_size), "
        "skip the previous-policy logprob pass: it would score the batch with the weights the training forward "
        "uses, so the loss takes those (detached) logprobs instead; loss and gradient are unchanged, the ratio "
        "reads exactly 1, and token_mult_prob_error / is_weight then compare the generator with the training "
        "forward. false = always run the pass (NeMo-RL's behaviour; loss_fn.force_on_policy_ratio is its "
        "explicit switch). Never skips with 2+ optimizer steps per step, where later steps are off-policy",
        default=True,
    )
    refit_buffer_size_mb: float = doc("bucket size of trainer -> generator weight transfers", default=256.0, validator=_positive)
    seed: int = doc("seed for data order, sampling and initialisation", default=42, validator=check_seed)
    async_grpo: AsyncGRPOConfig = doc(
        "asynchronous GRPO: generation of the next steps overlaps training, staleness bounded by admission",
        factory=AsyncGRPOConfig,
    )

    def __attrs_post_init__(self) -> None:
        low, high = self.advantage_clip_low, self.advantage_clip_high
        if low is not None and high is not None and low > high:
            raise ValueError(f"advantage_clip_low ({low}) must not exceed advantage_clip_high ({high})")


@attrs.define(kw_only=True, frozen=True)
class GRPORunConfig:
    # The section the loop reads the schedule from (max_num_steps, val_period, ...), whichever algorithm
    # registered with run_config="grpo" this config is for.
    schedule_section: ClassVar[str] = "grpo"

    algorithm: str = doc(
        "the registered algorithm this config is for: grpo, or one registered with run_config='grpo' (a GRPO variant)",
        default="grpo",
    )
    grpo: GRPOConfig = doc("GRPO settings", factory=GRPOConfig)
    loss_fn: ClippedPGLossConfig = doc("clipped policy-gradient loss", factory=ClippedPGLossConfig)
    policy: PolicyConfig = doc("the trained policy and its generator")
    data: DataConfig = doc("training and validation data", factory=DataConfig)
    env: EnvConfig = doc("the reward environment", factory=EnvConfig)
    logger: LoggerConfig = doc("metrics and samples", factory=LoggerConfig)
    checkpointing: CheckpointingConfig = doc("checkpoints", factory=CheckpointingConfig)
    cluster: ClusterConfig = doc("where workers run", factory=ClusterConfig)

    def __attrs_post_init__(self) -> None:
        rollouts = self.grpo.num_prompts_per_step * self.grpo.num_generations_per_prompt
        if rollouts % self.policy.train_global_batch_size:
            raise ValueError(
                f"grpo.num_prompts_per_step x grpo.num_generations_per_prompt ({rollouts}) must be a multiple of "
                f"policy.train_global_batch_size ({self.policy.train_global_batch_size})"
            )
        steps = rollouts // self.policy.train_global_batch_size
        if self.loss_fn.force_on_policy_ratio and steps > 1:
            raise ValueError(
                f"loss_fn.force_on_policy_ratio assumes one optimizer step per rollout batch, but "
                f"grpo.num_prompts_per_step x grpo.num_generations_per_prompt ({rollouts}) / "
                f"policy.train_global_batch_size ({self.policy.train_global_batch_size}) gives {steps} steps, and from "
                "the second one on the samples are off-policy; set policy.train_global_batch_size to "
                f"{rollouts} or turn force_on_policy_ratio off"
            )
        refusals = async_grpo_refusals(self.grpo, self.loss_fn, self.cluster)
        if refusals:
            raise ValueError(refusals[0])
