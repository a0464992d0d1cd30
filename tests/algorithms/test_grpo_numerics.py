"""GRPO's use of the loss options: a forced ratio, or one optimizer step per rollout batch, skips the
previous-policy pass (and changes nothing else), the policy version counts optimizer steps, and
options that cannot hold are config errors."""

from __future__ import annotations

import pytest
import torch

from reinforge.algorithms.losses_pg import ClippedPGLoss, ClippedPGLossConfig
from reinforge.backends.training.dtensor.backend import DTensorBackend
from reinforge.backends.training.dtensor.config import DTensorConfig
from reinforge.core.errors import ConfigError
from reinforge.core.load import load_config
from reinforge.core.run_config import OptimizerConfig, PolicyConfig
from reinforge.trainer import Trainer
from reinforge.testing.conformance_training import conformance_batch, weights
from tests.integration.grpo_helpers import CPU_RECIPE, tiny_overrides


def grpo_config(model_dir, out, *extra: str):
    return load_config(CPU_RECIPE, tiny_overrides(model_dir, out, steps=1, extra=extra))


def test_forced_ratio_with_several_optimizer_steps_is_a_config_error(tiny_model_dir, tmp_path):
    # 2 prompts x 4 generations = 8 rollouts over batches of 4: two optimizer steps per rollout batch
    with pytest.raises(ConfigError, match="force_on_policy_ratio assumes one optimizer step per rollout batch"):
        grpo_config(tiny_model_dir, tmp_path, "policy.train_global_batch_size=4", "loss_fn.force_on_policy_ratio=true")
    assert grpo_config(tiny_model_dir, tmp_path, "loss_fn.force_on_policy_ratio=true").loss_fn.force_on_policy_ratio


def test_dual_clip_under_reinforce_is_a_config_error(tiny_model_dir, tmp_path):
    with pytest.raises(ConfigError, match="ratio_clip_c"):
        grpo_config(tiny_model_dir, tmp_path, "loss_fn.disable_ppo_ratio=true", "loss_fn.ratio_clip_c=3.0")


def _policy(model_dir) -> PolicyConfig:
    return PolicyConfig(
        model_name=str(model_dir),
        train_global_batch_size=8,
        train_micro_batch_size=2,
        logprob_batch_size=4,
        max_total_sequence_length=64,
        max_grad_norm=None,
        optimizer=OptimizerConfig(name="sgd", lr=1.0, weight_decay=0.0),  # weight change == -gradient
    )


def test_forced_ratio_gives_the_loss_and_update_of_the_prev_logprob_path(tiny_model_dir):
    """One step on the same batch: prev_logprobs from a logprob pass (ratio 1 up to round-off) vs the forced ratio."""
    with_pass = DTensorBackend(_policy(tiny_model_dir), DTensorConfig())
    forced = DTensorBackend(_policy(tiny_model_dir), DTensorConfig())
    batch = conformance_batch(with_pass.model.config.vocab_size)
    generator = torch.Generator().manual_seed(5)
    batch["advantages"] = torch.randn(len(batch), 1, generator=generator) * batch["token_mask"]  # [B, T]
    options = {"reference_policy_kl_penalty": 0.0, "ratio_clip_min": 0.2, "ratio_clip_max": 0.28}

    batch["prev_logprobs"] = with_pass.logprobs(batch)
    expected = with_pass.train(batch, ClippedPGLoss(ClippedPGLossConfig(**options)))
    del batch["prev_logprobs"]
    actual = forced.train(batch, ClippedPGLoss(ClippedPGLossConfig(force_on_policy_ratio=True, **options)))

    assert actual["probs_ratio_min"] == 1.0 and actual["probs_ratio_max"] == 1.0  # exactly: exp(x - x)
    assert actual["probs_ratio"] == pytest.approx(1.0, abs=1e-7)  # a sum of microbatch shares
    assert expected["probs_ratio_max"] == pytest.approx(1.0, abs=1e-5)
    assert actual["loss"] == pytest.approx(expected["loss"], abs=1e-6)
    assert actual["grad_norm"] == pytest.approx(expected["grad_norm"], rel=1e-5)
    after_pass, after_forced = weights(with_pass), weights(forced)
    worst = max((after_pass[name] - after_forced[name]).abs().max().item() for name in after_pass)
    assert worst < 1e-6


class CountingPolicy:
    """The real training backend, counting the logprob passes GRPO asks of it."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.logprob_calls = 0
        self.train_calls = 0

    def logprobs(self, batch, temperature: float = 1.0):
        self.logprob_calls += 1
        return self.backend.logprobs(batch, temperature=temperature)

    def train(self, batch, loss_fn, temperature: float = 1.0):
        self.train_calls += 1
        return self.backend.train(batch, loss_fn, temperature=temperature)

    def __getattr__(self, name: str):
        return getattr(self.backend, name)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("extra", "optimizer_steps", "logprob_passes"),
    [
        (("policy.train_global_batch_size=4",), 2, 1),  # 2 optimizer steps: the pass is never skipped
        (("policy.train_global_batch_size=4", "grpo.skip_redundant_logprob_pass=true"), 2, 1),
        (("loss_fn.force_on_policy_ratio=true",), 1, 0),
        ((), 1, 0),  # one optimizer step: skipped by default
        (("grpo.skip_redundant_logprob_pass=false",), 1, 1),
    ],
    ids=["two-steps", "two-steps-skip-on", "forced-ratio", "one-step-default", "one-step-skip-off"],
)
def test_grpo_step_versions_and_logprob_passes(tiny_model_dir, tmp_path, extra, optimizer_steps, logprob_passes):
    trainer = Trainer.from_config(grpo_config(tiny_model_dir, tmp_path, "grpo.val_at_end=false", *extra))
    counting = CountingPolicy(trainer.run.policy)
    trainer.run.policy = counting
    grpo = trainer.algorithm
    try:
        metrics = grpo.train_step(1, next(trainer.run.loader))
    finally:
        trainer.run.shutdown()
    assert counting.train_calls == optimizer_steps and metrics["train/optimizer_steps"] == optimizer_steps
    assert grpo.policy_version == optimizer_steps  # counts optimizer steps, not GRPO steps
    assert counting.logprob_calls == logprob_passes
    assert trainer.run.rollouts.generator_version == 0  # stale: the next step refits
    assert metrics["train/advantages_max_abs"] == max(-metrics["train/advantages_min"], metrics["train/advantages_max"])
    assert "train/token_mult_prob_error" in metrics
    if logprob_passes == 0:
        assert metrics["train/probs_ratio_min"] == 1.0 and metrics["train/probs_ratio_max"] == 1.0


class RecordingPolicy(CountingPolicy):
    """CountingPolicy that also keeps the batches it trained on and the weights before the first step."""

    def __init__(self, backend) -> None:
        super().__init__(backend)
        self.trained: list = []
        self.before: dict[str, torch.Tensor] = {}

    def train(self, batch, loss_fn, temperature: float = 1.0):
        if not self.trained:
            self.before = {name: tensor.clone() for name, tensor in weights(self.backend).items()}
        self.trained.append(batch)
        return super().train(batch, loss_fn, temperature)


def _fixed_advantages(rewards: torch.Tensor, group: int) -> torch.Tensor:
    return torch.randn(len(rewards), generator=torch.Generator().manual_seed(11))  # [N]


@pytest.mark.integration
def test_skipping_the_redundant_pass_gives_the_loss_gradients_and_weights_of_the_pass(tiny_model_dir, tmp_path):
    """One GRPO step, one optimizer step: skipping the previous-policy pass (the default) vs computing it.

    SGD with lr 1 and no clipping or decay makes the weight change equal to minus the gradient, so
    equal post-step weights (to 1e-6) mean equal gradients (to 1e-6).
    """
    plain_sgd = ("policy.optimizer.name=sgd", "policy.optimizer.lr=1.0", "policy.optimizer.weight_decay=0.0",
                 "policy.max_grad_norm=null", "grpo.val_at_end=false")
    runs = {}
    for skip in (True, False):
        out = tmp_path / f"skip-{skip}"
        config = grpo_config(tiny_model_dir, out, *plain_sgd, f"grpo.skip_redundant_logprob_pass={str(skip).lower()}")
        trainer = Trainer.from_config(config)
        # The untrained tiny model earns no reward, so every advantage would be 0 and so would the
        # gradient: give both runs the same non-zero advantages through GRPO's estimator hook.
        trainer.algorithm.advantages = _fixed_advantages
        recording = RecordingPolicy(trainer.run.policy)
        trainer.run.policy = recording
        try:
            metrics = trainer.algorithm.train_step(1, next(trainer.run.loader))
            after = weights(recording.backend)
        finally:
            trainer.run.shutdown()
        runs[skip] = (recording, metrics, after)

    (skipped, skip_metrics, skip_after), (computed, pass_metrics, pass_after) = runs[True], runs[False]
    assert (skipped.logprob_calls, computed.logprob_calls) == (0, 1)
    assert skipped.train_calls == computed.train_calls == 1
    # the same rollouts reached both trainings (same seed, same initial weights)
    assert torch.equal(skipped.trained[0]["input_ids"], computed.trained[0]["input_ids"])
    assert "prev_logprobs" not in skipped.trained[0] and "prev_logprobs" in computed.trained[0]
    assert skip_metrics["train/probs_ratio_min"] == 1.0 and skip_metrics["train/probs_ratio_max"] == 1.0
    assert pass_metrics["train/probs_ratio_max"] == pytest.approx(1.0, abs=1e-5)
    assert skip_metrics["train/loss"] == pytest.approx(pass_metrics["train/loss"], abs=1e-6)
    assert skip_metrics["train/grad_norm"] == pytest.approx(pass_metrics["train/grad_norm"], rel=1e-5)
    assert skip_metrics["train/token_mult_prob_error"] == pytest.approx(pass_metrics["train/token_mult_prob_error"], abs=1e-5)
    assert skipped.before.keys() == computed.before.keys()
    worst_gradient = 0.0
    for name, before in skipped.before.items():
        assert torch.equal(before, computed.before[name]), name  # identical start
        gradient_skip = before - skip_after[name]  # = lr * gradient, lr = 1
        gradient_pass = computed.before[name] - pass_after[name]
        worst_gradient = max(worst_gradient, (gradient_skip - gradient_pass).abs().max().item())
    assert worst_gradient < 1e-6
    moved = max((computed.before[name] - pass_after[name]).abs().max().item() for name in pass_after)
    assert moved > 1e-4  # the step did change the weights, so the comparison above is not vacuous
