"""GRPO: group-relative advantages over G sampled responses per prompt, clipped policy gradient.

One step, as data flows: prompts -> repeated G times -> [refit the generator if the policy
changed] -> rollouts (generation + environment) -> reward scaling / overlong shaping ->
[dynamic sampling] -> advantages -> previous and reference logprobs -> one optimizer step per
`train_global_batch_size` rows -> metrics. The algorithm talks only to the seams, so the same
code runs with any backend pair, in one process or on Ray worker groups.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch

from reinforge.algorithms.advantage_estimators import estimate_advantages, make_advantage_estimator
from reinforge.algorithms.advantages import group_has_variance
from reinforge.algorithms.grpo_config import GRPOConfig, GRPORunConfig
from reinforge.algorithms.losses_pg import ClippedPGLoss, ClippedPGLossConfig
from reinforge.core.batch import Batch
from reinforge.core.constructors import AdvantageEstimator
from reinforge.core.errors import ReinforgeError
from reinforge.core.run import RunParts
from reinforge.core.run_config import DataConfig, PolicyConfig
from reinforge.core.sampling import SamplingParams
from reinforge.data.prompts import build_prompt_set
from reinforge.rollouts.turns import RolloutResult
from reinforge.eval.metrics import pass_at_k


class GRPO:
    """GRPO over the rollout service; its constructor takes only its own settings.

    `GRPO(GRPOConfig(num_generations_per_prompt=8), loss=ClippedPGLossConfig(ratio_clip_max=0.28))`;
    the schedule (steps, validation, seed) is the Trainer's `LoopConfig`, the optimizer step size
    is the policy's `train_global_batch_size`, and sampling is the generator's.
    """

    needs_generation = True
    needs_environment = True

    def __init__(
        self, config: GRPOConfig | None = None, loss: ClippedPGLossConfig | None = None, *, samples_to_log: int = 4
    ) -> None:
        self.config = config or GRPOConfig()
        self.loss_config = loss or ClippedPGLossConfig()
        self.loss_fn = ClippedPGLoss(self.loss_config)
        self.samples_to_log = samples_to_log
        self.run: Any = None
        self.policy_version = 0  # bumped by every optimizer step
        self._advantage_estimator: AdvantageEstimator | None = None  # resolved by name in setup (or on first use)

    @classmethod
    def from_run_config(cls, config: GRPORunConfig) -> GRPO:
        """The algorithm plugin's constructor: a whole YAML run config (`grpo:`, `loss_fn:`, ...)."""
        return cls(config.grpo, config.loss_fn, samples_to_log=config.logger.num_samples_to_log)

    @property
    def needs_reference(self) -> bool:
        return self.loss_config.reference_policy_kl_penalty > 0

    def records_per_step(self, policy: PolicyConfig) -> int:
        return self.config.num_prompts_per_step

    def prepare_data(
        self, records: list[dict[str, Any]], tokenizer: Any, *, data: DataConfig, policy: PolicyConfig, source: str
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Tokenized prompts (chat template, prompt template, system prompt; overlong ones dropped or truncated)."""
        if not records:
            return [], {}
        return build_prompt_set(data, tokenizer, records)

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
        self.run = run
        self._advantage_estimator = make_advantage_estimator(self.config, run.registry)

    # ------------------------------------------------------------------ the step
    def train_step(self, step: int, prompts: list[dict[str, Any]]) -> dict[str, float]:
        cfg, run = self.config, self.run
        metrics: dict[str, float] = {}
        metrics.update(self.refit_if_stale())
        rollouts, rewards, extra = self._collect(step, prompts)
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

        metrics.update(_mean_metrics(train_metrics, prefix="train/"))
        metrics.update(self._rollout_metrics(rollouts, rewards, batch, advantages, prefix="train/"))
        run.logger.log_samples(self._samples(rollouts, rewards, advantages), step)
        return metrics

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
        """Rollouts for the step; with dynamic sampling, only groups whose rewards differ, topped up."""
        cfg, run = self.config, self.run
        group = cfg.num_generations_per_prompt
        wanted = run.loader.batch_size * group
        kept: list[RolloutResult] = []
        kept_rewards: list[torch.Tensor] = []
        rounds = 0
        while True:
            repeated = [p for p in prompts for _ in range(group)]
            rollouts = self.rollout(repeated, self._sampling(step, rounds))
            raw = rollouts.rewards
            rewards = self._shape_rewards(rollouts)
            if not cfg.use_dynamic_sampling:
                return rollouts, rewards, {}
            keep = group_has_variance(raw, group).nonzero().squeeze(1).tolist()
            kept.append(_select(rollouts, keep))
            kept_rewards.append(rewards[keep])
            rounds += 1
            have = sum(len(r.rewards) for r in kept)
            if have >= wanted or rounds >= cfg.dynamic_sampling_max_gen_batches:
                break
            prompts = run.more_prompts()  # the loop's data stream, asked through the run
        merged = _concat(kept)
        rewards = torch.cat(kept_rewards)
        usable = min(len(rewards), wanted)
        usable -= usable % self.run.policy_config.train_global_batch_size  # whole optimizer steps, whole groups
        usable -= usable % group
        merged = _select(merged, list(range(usable)))
        extra = {"train/dynamic_sampling_rounds": float(rounds), "train/dynamic_sampling_kept": float(usable)}
        return merged, rewards[:usable], extra

    def _shape_rewards(self, rollouts: RolloutResult) -> torch.Tensor:
        cfg = self.config
        rewards = cfg.reward_scaling.apply(rollouts.rewards)
        lengths = rollouts.batch["token_mask"].sum(dim=1)
        return cfg.reward_shaping.apply(rewards, lengths, rollouts.batch["truncated"]).to(torch.float32)

    # ------------------------------------------------------------------ generation (through the rollout service)
    def rollout(self, prompts: list[dict[str, Any]], sampling: SamplingParams) -> RolloutResult:
        return self.run.rollouts.collect(prompts, sampling, max_turns=self.config.max_rollout_turns)

    def refit_if_stale(self) -> dict[str, float]:
        """Push the policy's weights into the generator when it holds an older version."""
        bucket_bytes = int(self.config.refit_buffer_size_mb * 2**20)
        return self.run.rollouts.sync(self.run.policy, self.policy_version, bucket_bytes=bucket_bytes)

    def _sampling(self, step: int, round_: int, *, validation: bool = False) -> SamplingParams:
        gen = self.run.policy_config.generation
        temperature = gen.temperature
        if validation and self.config.val_temperature is not None:
            temperature = self.config.val_temperature
        # A seed per (step, round) makes a resumed run sample exactly what the uninterrupted one did.
        seed = (self.run.loop.seed * 1_000_003 + step * 101 + round_ + (7919 if validation else 0)) % 2**31
        return SamplingParams(
            temperature=temperature,
            top_p=gen.top_p,
            top_k=gen.top_k,
            max_new_tokens=gen.max_new_tokens,
            stop_strings=gen.stop_strings,
            stop_token_ids=gen.stop_token_ids,
            seed=seed,
        )

    def _train_temperature(self) -> float:
        temperature = self.run.policy_config.generation.temperature
        return temperature if temperature > 0 else 1.0

    # ------------------------------------------------------------------ validation
    def validate(self, step: int) -> dict[str, float]:
        cfg, run = self.config, self.run
        prompts = run.val_prompts[: cfg.max_val_samples] if cfg.max_val_samples else run.val_prompts
        if not prompts:
            return {}
        refit = self.refit_if_stale()
        k = cfg.val_num_generations_per_prompt
        chunk = max(run.loader.batch_size, 1)
        rewards, correct_rows, lengths, truncated = [], [], [], []
        env_sums: dict[str, float] = {}
        # counts (the environment's `summed_metrics`, e.g. answers without a box) add up over the
        # validation batches; everything else is a per-row mean
        counts = frozenset(getattr(run.rollouts.environment, "summed_metrics", ()))
        with run.timer.phase("validation"):
            for start in range(0, len(prompts), chunk):
                part = [p for p in prompts[start : start + chunk] for _ in range(k)]
                result = self.rollout(part, self._sampling(step, start, validation=True))
                rewards.append(result.rewards)
                correct_rows.append(result.correct)
                for key, value in result.env_metrics.items():  # weighted by rows, averaged below (counts: summed)
                    env_sums[key] = env_sums.get(key, 0.0) + (value if key in counts else value * len(part))
                lengths.append(result.batch["token_mask"].sum(dim=1))
                truncated.append(result.batch["truncated"].float())
        reward = torch.cat(rewards)
        correct = torch.cat(correct_rows).tolist()
        groups = [correct[i : i + k] for i in range(0, len(correct), k)]
        metrics = {
            "val/accuracy": float(sum(correct) / len(correct)),
            "val/reward_mean": float(reward.mean()),
            f"val/pass@{k}": float(sum(pass_at_k(g, k) for g in groups) / len(groups)),
            "val/response_length_mean": float(torch.cat(lengths).mean()),
            "val/truncation_rate": float(torch.cat(truncated).mean()),
        }
        metrics.update({f"val/env/{k}": v if k in counts else v / len(reward) for k, v in env_sums.items()})
        return {**refit, **metrics}

    # ------------------------------------------------------------------ metrics and state
    def _rollout_metrics(
        self, rollouts: RolloutResult, rewards: torch.Tensor, batch: Batch, advantages: torch.Tensor, prefix: str
    ) -> dict[str, float]:
        lengths = batch["token_mask"].sum(dim=1)
        metrics = {
            "reward_mean": float(rewards.mean()),
            "reward_std": float(rewards.std(unbiased=False)),
            "accuracy": float(rollouts.correct.float().mean()),  # the environment's verdict, not the shaped reward
            "response_length_mean": float(lengths.mean()),
            "response_length_max": float(lengths.max()),
            "truncation_rate": float(batch["truncated"].float().mean()),
            "advantages_mean": float(advantages.mean()),
            "advantages_std": float(advantages.std(unbiased=False)),
            "advantages_min": float(advantages.min()),
            "advantages_max": float(advantages.max()),
            # one exploding sample shows here on its first step, whatever its sign
            "advantages_max_abs": float(advantages.abs().max()),
            "mean_prompt_length": float(batch["prompt_lengths"].float().mean()),
            "num_rollouts": float(len(rewards)),
        }
        out = {f"{prefix}{k}": v for k, v in metrics.items()}
        out.update({f"env/{k}": v for k, v in rollouts.env_metrics.items()})
        return out

    def _samples(self, rollouts: RolloutResult, rewards: torch.Tensor, advantages: torch.Tensor) -> list[dict[str, Any]]:
        count = min(self.samples_to_log, len(rollouts.responses))
        return [
            {
                "prompt": rollouts.batch["messages"][i][-2]["content"] if len(rollouts.batch["messages"][i]) > 1 else "",
                "response": rollouts.responses[i],
                "answer": rollouts.batch["metadata"][i].get("answer"),
                "reward": float(rewards[i]),
                "advantage": float(advantages[i]),
                "truncated": bool(rollouts.batch["truncated"][i]),
            }
            for i in range(count)
        ]

    def state_dict(self) -> dict[str, Any]:
        return {"policy_version": self.policy_version}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # The generator was rebuilt from the base model: mark it stale so the next step refits it.
        self.policy_version = int(state["policy_version"])
        self.run.rollouts.mark_stale()


def _mean_metrics(per_step: list[dict[str, float]], prefix: str) -> dict[str, float]:
    keys = {k for m in per_step for k in m}
    out = {}
    for key in keys:
        values = [m[key] for m in per_step if key in m]
        if key.endswith("_max"):
            out[prefix + key] = max(values)
        elif key.endswith("_min"):
            out[prefix + key] = min(values)
        elif key == "tokens":
            out[prefix + key] = sum(values)
        else:
            out[prefix + key] = sum(values) / len(values)
    out[prefix + "optimizer_steps"] = float(len(per_step))
    return out


def _select(result: RolloutResult, rows: list[int]) -> RolloutResult:
    return attrs.evolve(
        result,
        batch=result.batch.select(rows),
        rewards=result.rewards[rows],
        responses=[result.responses[i] for i in rows],
        turns=[result.turns[i] for i in rows],
        info=[result.info[i] for i in rows],
        correct=result.correct[rows],
    )


def _concat(results: list[RolloutResult]) -> RolloutResult:
    return RolloutResult(
        batch=Batch.concat([r.batch for r in results]),
        rewards=torch.cat([r.rewards for r in results]),
        responses=[s for r in results for s in r.responses],
        env_metrics=results[0].env_metrics,
        turns=[t for r in results for t in r.turns],
        info=[x for r in results for x in r.info],
        correct=torch.cat([r.correct for r in results]),
    )
