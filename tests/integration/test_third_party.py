"""A third-party algorithm and a third-party generation backend, written against the public API only,
train GRPO-style on the local executor (tests/ray/test_third_party_ray.py: the same on Ray)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.integration.grpo_helpers import run_reinforge
from tests.integration.third_party_helpers import THIRD_PARTY, ReinforcePlusPlus, third_party_trainer


def reference_advantages(rewards: np.ndarray, group: int, eps: float = 1e-6) -> np.ndarray:
    """REINFORCE++ with a group baseline, in float64 numpy: minus the group mean, over the batch's population std."""
    centred = (rewards.reshape(-1, group) - rewards.reshape(-1, group).mean(axis=1, keepdims=True)).reshape(-1)
    return centred / (np.sqrt(np.mean((centred - centred.mean()) ** 2)) + eps)


def test_reinforce_pp_advantages_by_hand():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    got = ReinforcePlusPlus().advantages(rewards, 4)
    # centred: [.75, -.25, -.25, -.25, .5, .5, -.5, -.5]; population std sqrt(1.75 / 8) = 0.4677072
    std = (1.75 / 8) ** 0.5
    expected = torch.tensor([0.75, -0.25, -0.25, -0.25, 0.5, 0.5, -0.5, -0.5]) / (std + 1e-6)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    assert ReinforcePlusPlus().advantages(torch.ones(8), 4).tolist() == [0.0] * 8  # no spread: no signal


def test_reinforce_pp_advantages_match_a_float64_reimplementation():
    rng = np.random.default_rng(0)
    for _ in range(300):
        group = int(rng.integers(2, 9))
        rewards = rng.normal(size=group * int(rng.integers(1, 9))) * rng.choice([0.01, 1.0, 100.0])
        got = ReinforcePlusPlus().advantages(torch.tensor(rewards, dtype=torch.float64), group).numpy()
        np.testing.assert_allclose(got, reference_advantages(rewards, group), rtol=1e-9, atol=1e-9)


@pytest.mark.integration
def test_third_party_algorithm_and_generator_train_on_the_local_executor(tiny_model_dir, tmp_path):
    trainer = third_party_trainer(tiny_model_dir, tmp_path)
    metrics = trainer.fit()
    assert type(trainer.run.generation).__name__ == "PlainGeneration"
    assert trainer.step == 2 and metrics["train/num_rollouts"] == 16.0 and metrics["train/optimizer_steps"] == 2.0
    # REINFORCE++'s batch-normalised advantages: mean 0, population std 1.
    assert metrics["train/advantages_mean"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["train/advantages_std"] == pytest.approx(1.0, abs=1e-4)
    # After the refit, the third-party generator's logprobs are the trainer's: its sampling and weight loading are right.
    assert metrics["train/token_mult_prob_error"] == pytest.approx(1.0, abs=1e-4)
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["step_2"]
    # `reinforge convert` reads the checkpoint's config.yaml, which a run composed in Python writes too.
    step = tmp_path / "ckpt" / "step_2"
    plugins = f"--plugins={THIRD_PARTY / 'plugins.toml'}"  # the config names the third-party generator
    run_reinforge(plugins, "convert", f"--dcp-ckpt-path={step / 'policy'}", f"--hf-ckpt-path={tmp_path / 'hf'}")
    assert (tmp_path / "hf" / "config.json").is_file() and (tmp_path / "hf" / "tokenizer.json").is_file()
