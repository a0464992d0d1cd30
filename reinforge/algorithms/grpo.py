"""GRPO: group-relative advantages over G sampled responses per prompt, clipped policy gradient.

One step, as data flows: prompts -> repeated G times -> [refit the generator if the policy
changed] -> rollouts (generation + environment) -> reward scaling / overlong shaping ->
[dynamic sampling] -> advantages -> previous and reference logprobs -> one optimizer step per
`train_global_batch_size` rows -> metrics. The algorithm talks only to the seams, so the same
code runs with any backend pair, in one process or on Ray worker groups.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch

from reinforge.algorithms.advantage_estimators import estimate_advantages, make_advantage_estimator
from reinforge.algorithms.advantages import group_has_variance
from reinforge.algorithms.grpo_config import GRPOConfig, GRPORunConfig, async_grpo_refusals
from reinforge.algorithms.grpo_metrics import mean_metrics, rollout_metrics, sample_records
from reinforge.algorithms.losses_pg import ClippedPGLoss, ClippedPGLossConfig
from reinforge.core.constructors import AdvantageEstimator
from reinforge.core.errors import ReinforgeError
from reinforge.core.records import RecordFormat
from reinforge.core.run import RunParts, StepGroups, StepWork
from reinforge.core.run_config import PolicyConfig
from reinforge.core.run_guard import warn
from reinforge.core.sampling import SamplingParams, sampling_params
from reinforge.rollouts.evaluation import evaluate
from reinforge.rollouts.groups import collect_groups, select_rows
from reinforge.rollouts.turns import RolloutResult


# Leading steps with every reward 0 after which the run says that nothing is being learned.
ZERO_REWARD_STEPS = 3


class GRPO:
    """GRPO over the rollout service; its constructor takes only its own settings.

    `GRPO(GRPOConfig(num_generations_per_prompt=8), loss=ClippedPGLossConfig(ratio_clip_max=0.28))`;
    the schedule (steps, validation, seed) is the Trainer's `LoopConfig`, the optimizer step size
    is the policy's `train_global_batch_size`, and sampling is the generator's.
    """

    needs_generation = True
    needs_environment = True
    record_format = RecordFormat(kind="prompts")  # tokenized prompts (reinforge.data.preparation)

    def __init__(
        self, config: GRPOConfig | None = None, loss: ClippedPGLossConfig | None = None, *, samples_to_log: int = 4
    ) -> None:
        self.config = config or GRPOConfig()
        self.loss_config = loss or ClippedPGLossConfig()
        refusals = async_grpo_refusals(self.config, self.loss_config)  # as GRPORunConfig refuses them at config load
        if refusals:
            raise ReinforgeError(refusals[0])
        self.loss_fn = ClippedPGLoss(self.loss_config)
        self.samples_to_log = samples_to_log
        self.run: Any = None
        self.policy_version = 0  # bumped by every optimizer step
        self._advantage_estimator: AdvantageEstimator | None = None  # resolved by name in setup (or on first use)
        self._zero_reward_steps = 0  # leading steps in which every reward was 0 (see _warn_if_nothing_is_rewarded)
        self._submitted = 0  # asynchronous GRPO: the last step whose rollouts were submitted to the producer

    @classmethod
    def from_run_config(cls, config: GRPORunConfig) -> GRPO:
        """The algorithm plugin's constructor: a whole YAML run config (`grpo:`, `loss_fn:`, ...)."""
        return cls(config.grpo, config.loss_fn, samples_to_log=config.logger.num_samples_to_log)

    @property
    def async_rollouts_max_age(self) -> int | None:
        """grpo.async_grpo: the composition root builds a producer when this is not None."""
        settings = self.config.async_grpo
        return settings.max_trajectory_age_steps if settings.enabled else None

    @property
    def needs_reference(self) -> bool:
        return self.loss_config.reference_policy_kl_penalty > 0

    def records_per_step(self, policy: PolicyConfig) -> int:
        return self.config.num_prompts_per_step

    def samples_per_step(self, records: int) -> int:
        """Rollouts one step trains on: the policy's global batch size when the user leaves it unset."""
        return records * self.config.num_generations_per_prompt

    @property
    def validation_metrics(self) -> tuple[str, ...]:
        """The keys `validate` returns (checkpointing.metric_name must be one of them)."""
        k = self.config.val_num_generations_per_prompt
        return ("val/accuracy", "val/reward_mean", f"val/pass@{k}", "val/response_length_mean", "val/truncation_rate")

    def setup(self, run: RunParts) -> None:
        rollouts = run.loader.batch_size * self.config.num_generations_per_prompt
        global_batch = run.policy_config.train_global_batch_size
        if rollouts % global_batch:
            raise ReinforgeError(
                f"prompts per step x grpo.num_generations_per_prompt ({rollouts}) must be a multiple of "
                f"policy.train_global_batch_size ({global_batch}), so that every optimizer step is whole"
            )
        if self.loss_config.force_on_policy_ratio and rollouts // global_batch > 1:
            raise ReinforgeError(
                f"loss_fn.force_on_policy_ratio assumes one optimizer step per rollout batch, but {rollouts} rollouts "
                f"in steps of policy.train_global_batch_size ({global_batch}) make {rollouts // global_batch}; set "
                f"train_global_batch_size to {rollouts} or turn force_on_policy_ratio off"
            )
        if self.config.use_dynamic_sampling and self.config.num_generations_per_prompt < 2:
            raise ReinforgeError("dynamic sampling needs grpo.num_generations_per_prompt >= 2")
        if run.rollouts is None:
            raise ReinforgeError("GRPO needs a generation backend and an environment (the run has no rollout service)")
        if self.config.max_rollout_turns > 1:
            run.rollouts.check_turns()  # a chat template that cannot bridge turns fails now, not mid-run
        self.run = run
        self._advantage_estimator = make_advantage_estimator(self.config, run.registry)

    # ------------------------------------------------------------------ the step
    def train_step(self, step: int, prompts: list[dict[str, Any]]) -> dict[str, float]:
        cfg, run = self.config, self.run
        metrics: dict[str, float] = {}
        metrics.update(self.refit_if_stale())
        if self.async_rollouts_max_age is not None:
            rollouts, rewards, extra = self._collect_async(step, prompts)
        else:
            rollouts, rewards, extra = self._collect(step, prompts)
        self._warn_if_nothing_is_rewarded(rollouts.rewards)
        metrics.update(extra)
        if len(rollouts.rewards) == 0:
            metrics["train/skipped"] = 1.0
            return metrics

        batch = rollouts.batch
        group = cfg.num_generations_per_prompt
        advantages = self.advantages(rewards, group).to(torch.float32)  # [N]
        batch["advantages"] = advantages[:, None] * batch["token_mask"]  # [N, T]
        if cfg.overlong_filtering:
            batch["sample_mask"] = (~batch["truncated"]).to(torch.float32)

        temperature = self._train_temperature()
        optimizer_steps = len(batch) // run.policy_config.train_global_batch_size
        loss_fn, needs_prev = self._step_loss(optimizer_steps)
        with run.timer.phase("logprobs"):
            if needs_prev:
                batch["prev_logprobs"] = run.policy.logprobs(batch, temperature=temperature)
            if self.needs_reference:
                batch["reference_logprobs"] = run.policy.reference_logprobs(batch, temperature=temperature)

        with run.timer.phase("training"):
            chunks = batch.split(optimizer_steps)
            train_metrics = []
            for chunk in chunks:
                train_metrics.append(run.policy.train(chunk, loss_fn, temperature=temperature))
                self.policy_version += 1  # one optimizer step: the generator's weights are now one more behind

        metrics.update(mean_metrics(train_metrics, prefix="train/"))
        metrics.update(rollout_metrics(rollouts, rewards, batch, advantages, prefix="train/"))
        run.logger.log_samples(sample_records(rollouts, rewards, advantages, self.samples_to_log), step)
        return metrics

    def _warn_if_nothing_is_rewarded(self, rewards: torch.Tensor) -> None:
        """Say so when every reward of the first steps is 0: equal rewards teach nothing, and the usual cause is a
        prompt that asks for another answer format than the reward accepts (or than the model knows)."""
        if self._zero_reward_steps < 0:
            return
        if len(rewards) == 0 or bool((rewards != 0).any()):
            self._zero_reward_steps = -1  # something was rewarded: never check again
            return
        self._zero_reward_steps += 1
        if self._zero_reward_steps < ZERO_REWARD_STEPS:
            return
        self._zero_reward_steps = -1
        data = self.run.data
        template = "none" if data is None else repr(data.prompt_file)
        warn(
            f"every reward of the first {ZERO_REWARD_STEPS} steps was 0, so nothing is learned (equal rewards give zero "
            f"advantages). The prompts use the template data.prompt_file={template}, system_prompt="
            f"{None if data is None else data.system_prompt!r}: check that it asks for the answer format your reward "
            "accepts and the model knows (a sample is in the run's samples log), e.g. "
            "data=rf.DataConfig(prompt_file=None, system_prompt='Put your final answer within \\boxed{}.')"
        )

    def _step_loss(self, optimizer_steps: int) -> tuple[Any, bool]:
        """The loss for this step's optimizer steps, and whether it needs the previous-policy logprob pass.

        With one optimizer step, the pass would score the batch with exactly the weights the training
        forward uses, so its logprobs equal the training forward's and the ratio is 1 by construction:
        a loss that can take them from the training forward (`with_current_as_previous`) makes the
        pass redundant. A forced ratio (loss_fn.force_on_policy_ratio) never needs it. With 2+ steps the
        later ones train on samples of an older policy, so the pass is required.
        """
        if self.loss_config.force_on_policy_ratio:
            return self.loss_fn, False
        on_policy = getattr(self.loss_fn, "with_current_as_previous", None)
        if optimizer_steps == 1 and self.config.skip_redundant_logprob_pass and on_policy is not None:
            return on_policy(), False
        return self.loss_fn, True

    def advantages(self, rewards: torch.Tensor, group: int) -> torch.Tensor:
        """Per-rollout advantages `# [N]` from shaped rewards `# [N]` (groups of `group` adjacent samples).

        By default the estimator `grpo.advantage_estimator` names (resolved in `setup` through the
        run's registry, or here on first use outside a run), clamped to `grpo.advantage_clip_low/high`.
        A new estimator is best registered as a plugin (`reinforge_register_advantage_estimators`);
        overriding this method in a subclass still works. The loss (`self.loss_fn`) is the other hook.
        """
        if self._advantage_estimator is None:
            self._advantage_estimator = make_advantage_estimator(self.config)
        return estimate_advantages(self._advantage_estimator, rewards, group, self.config)

    def _collect(self, step: int, prompts: list[dict[str, Any]]) -> tuple[RolloutResult, torch.Tensor, dict[str, float]]:
        """Rollouts for the step; with dynamic sampling, only groups whose rewards differ, topped up from the loader."""
        cfg, run = self.config, self.run
        group = cfg.num_generations_per_prompt
        dynamic = cfg.use_dynamic_sampling
        collected = collect_groups(
            run.rollouts,
            itertools.chain([prompts], run.loader),  # this step's prompts, then (dynamic sampling) the next ones
            group,
            wanted=run.loader.batch_size * group,
            sampling=lambda round_: self._sampling(step, round_),
            keep=(lambda result: group_has_variance(self._episode_rewards(result), group)) if dynamic else None,
            max_rounds=cfg.dynamic_sampling_max_gen_batches,
            max_turns=cfg.max_rollout_turns,
        )
        rollouts = collected.result
        if not dynamic:
            return rollouts, self._shape_rewards(rollouts), {}
        usable = len(rollouts.rewards)
        usable -= usable % run.policy_config.train_global_batch_size  # whole optimizer steps, whole groups
        usable -= usable % group
        rollouts = select_rows(rollouts, list(range(usable)))
        extra = {"train/dynamic_sampling_rounds": float(collected.rounds), "train/dynamic_sampling_kept": float(usable)}
        return rollouts, self._shape_rewards(rollouts), extra

    def _collect_async(self, step: int, prompts: list[dict[str, Any]]) -> tuple[RolloutResult, torch.Tensor, dict[str, float]]:
        """This step's groups from the producer, after submitting the steps up to `step + age` (their own prompts,
        read ahead through the loader's `peek`, which moves nothing that checkpoints save, and their own seeds).

        Step t trains with the weights after t - 1 steps, so its groups may be generated by weights at most `age`
        steps older: the producer admits step t only once the generator holds policy version >= (t - 1 - age) x the
        optimizer steps per step. The refit of this step (`refit_if_stale`, already done) lands between producer
        batches, so a batch in flight keeps the weights it started with.
        """
        run = self.run
        age = self.config.async_grpo.max_trajectory_age_steps
        per_step = self._optimizer_steps_per_step()
        last = min(step + age, run.loop.max_steps)  # nothing past the run's last step
        for target in range(max(step, self._submitted + 1), last + 1):
            batch = prompts if target == step else run.loader.peek(target - step - 1)
            run.rollouts.submit(self._work(target, batch, age, per_step))
            self._submitted = target
        groups: StepGroups = run.rollouts.take(self._work(step, prompts, age, per_step))
        for phase, seconds in groups.phases.items():  # the generator's time, so timing/generation_idle keeps its meaning
            run.timer.add(phase, seconds)
        lag = self.policy_version - groups.version  # optimizer steps between the generating and the training weights
        extra = {
            **groups.stats,
            "async/age_mean": lag / per_step,  # one batch per step: every group of the step has the same age
            "async/age_max": lag / per_step,
            "async/age_optimizer_steps_max": float(lag),
        }
        return groups.result, self._shape_rewards(groups.result), extra

    def _work(self, step: int, prompts: list[dict[str, Any]], age: int, per_step: int) -> StepWork:
        return StepWork(
            step=step,
            prompts=prompts,
            group_size=self.config.num_generations_per_prompt,
            sampling=self._sampling(step, 0),
            max_turns=self.config.max_rollout_turns,
            min_version=max(step - 1 - age, 0) * per_step,
        )

    def _optimizer_steps_per_step(self) -> int:
        return self.run.loader.batch_size * self.config.num_generations_per_prompt // self.run.policy_config.train_global_batch_size

    def _episode_rewards(self, rollouts: RolloutResult) -> torch.Tensor:
        """Each rollout's reward `# [N]`: its turns' sum, or its last turn's (grpo.multi_turn_reward)."""
        return rollouts.episode_rewards(self.config.multi_turn_reward)

    def _shape_rewards(self, rollouts: RolloutResult) -> torch.Tensor:
        cfg = self.config
        rewards = cfg.reward_scaling.apply(self._episode_rewards(rollouts))
        lengths = rollouts.batch["token_mask"].sum(dim=1)
        return cfg.reward_shaping.apply(rewards, lengths, rollouts.batch["truncated"]).to(torch.float32)

    # ------------------------------------------------------------------ generation (through the rollout service)
    def refit_if_stale(self) -> dict[str, float]:
        """Push the policy's weights into the generator when it holds an older version."""
        bucket_bytes = int(self.config.refit_buffer_size_mb * 2**20)
        return self.run.rollouts.sync(self.run.policy, self.policy_version, bucket_bytes=bucket_bytes)

    def _sampling(self, step: int, round_: int, *, validation: bool = False) -> SamplingParams:
        temperature = self.config.val_temperature if validation else None
        # A seed per (step, round) makes a resumed run sample exactly what the uninterrupted one did.
        seed = (self.run.loop.seed * 1_000_003 + step * 101 + round_ + (7919 if validation else 0)) % 2**31
        return sampling_params(self.run.generation_config, seed, temperature=temperature)

    def _train_temperature(self) -> float:
        temperature = self.run.generation_config.temperature
        return temperature if temperature > 0 else 1.0

    # ------------------------------------------------------------------ validation
    def validate(self, step: int) -> dict[str, float]:
        cfg, run = self.config, self.run
        prompts = run.val_prompts[: cfg.max_val_samples] if cfg.max_val_samples else run.val_prompts
        if not prompts:
            return {}
        with run.rollouts.paused():  # the asynchronous producer holds still: validation has the generator
            return self._validate(step, prompts)

    def _validate(self, step: int, prompts: list[Any]) -> dict[str, float]:
        cfg, run = self.config, self.run
        refit = self.refit_if_stale()
        k = cfg.val_num_generations_per_prompt
        with run.timer.phase("validation"):
            result = evaluate(
                run.rollouts,
                prompts,
                k,
                lambda start: self._sampling(step, start, validation=True),
                chunk_size=max(run.loader.batch_size, 1),
                max_turns=cfg.max_rollout_turns,
                summed_metrics=getattr(run.rollouts.environment, "summed_metrics", ()),
                episode_reward=cfg.multi_turn_reward,
            )
        metrics = {
            "val/accuracy": result.accuracy,
            "val/reward_mean": float(result.rewards.mean()),
            f"val/pass@{k}": result.pass_at(k),
            "val/response_length_mean": float(result.response_lengths.mean()),
            "val/truncation_rate": float(result.truncated.float().mean()),
        }
        metrics.update({f"val/env/{key}": value for key, value in result.env_metrics.items()})
        return {**refit, **metrics}

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {"policy_version": self.policy_version}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # The generator was rebuilt from the base model: mark it stale so the next step refits it.
        self.policy_version = int(state["policy_version"])
        self.run.rollouts.mark_stale()
        self._submitted = 0  # the producer's work is submitted again from the resumed step on

