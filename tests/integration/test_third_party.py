"""A third-party advantage estimator and a third-party generation backend, written against the public API
only and registered by a project plugins.toml, train GRPO on the local executor (tests/ray/test_third_party_ray.py:
the same on Ray)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.integration.grpo_helpers import run_reinforge
from tests.integration.third_party_helpers import THIRD_PARTY, CentredRank, third_party_trainer


def reference_ranks(rewards: np.ndarray, group: int) -> np.ndarray:
    """Centred ranks in float64 numpy, one sample at a time: (#below + #ties / 2) / (G - 1) - 1/2."""
    out = np.zeros_like(rewards)
    if group == 1:
        return out
    for start in range(0, len(rewards), group):
        values = rewards[start : start + group]
        for i, value in enumerate(values):
            below, ties = np.sum(values < value), np.sum(values == value) - 1
            out[start + i] = (below + ties / 2) / (group - 1) - 0.5
    return out


def test_centred_rank_advantages_by_hand():
    rewards = torch.tensor([0.0, 1.0, 1.0, 3.0, 5.0, 5.0, 5.0, 5.0])
    # group 1: ranks 0, 1.5, 1.5, 3 (the two 1.0 share ranks 1 and 2) -> / 3 - 1/2 = [-1/2, 0, 0, 1/2]; group 2: all tied -> 0
    got = CentredRank()(rewards, 4)
    assert got.tolist() == [-0.5, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.0]
    assert CentredRank()(torch.tensor([2.0, -7.0, 100.0]), 3).tolist() == [0.0, -0.5, 0.5]  # only the order counts
    assert CentredRank()(torch.tensor([4.0, 2.0]), 1).tolist() == [0.0, 0.0]  # a group of one: nothing to compare


def test_centred_rank_advantages_match_a_float64_reimplementation():
    rng = np.random.default_rng(0)
    for _ in range(300):
        group = int(rng.integers(1, 17))
        rewards = rng.integers(0, 4, size=group * int(rng.integers(1, 9))).astype(np.float64)  # many ties
        if rng.random() < 0.5:
            rewards = rng.normal(size=rewards.size) * rng.choice([0.01, 1.0, 100.0])
        got = CentredRank()(torch.tensor(rewards, dtype=torch.float64), group).numpy()
        np.testing.assert_allclose(got, reference_ranks(rewards, group), rtol=0, atol=1e-12)


@pytest.mark.integration
def test_third_party_algorithm_and_generator_train_on_the_local_executor(tiny_model_dir, tmp_path):
    trainer = third_party_trainer(tiny_model_dir, tmp_path)
    metrics = trainer.fit()
    assert type(trainer.run.generation).__name__ == "PlainGeneration"
    assert trainer.step == 2 and metrics["train/num_rollouts"] == 16.0 and metrics["train/optimizer_steps"] == 2.0
    # GRPO used the third-party estimator, found by name: centred ranks sum to 0 in each group and lie in [-1/2, 1/2].
    assert type(trainer.algorithm._advantage_estimator).__name__ == "CentredRank"
    assert metrics["train/advantages_mean"] == pytest.approx(0.0, abs=1e-6)
    assert -0.5 <= metrics["train/advantages_min"] < 0 < metrics["train/advantages_max"] <= 0.5
    # After the refit, the third-party generator's logprobs are the trainer's: its sampling and weight loading are right.
    assert metrics["train/token_mult_prob_error"] == pytest.approx(1.0, abs=1e-4)
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["step_2"]
    # `reinforge convert` reads the checkpoint's config.yaml, which a run composed in Python writes too.
    step = tmp_path / "ckpt" / "step_2"
    plugins = f"--plugins={THIRD_PARTY / 'plugins.toml'}"  # the config names the third-party generator
    run_reinforge(plugins, "convert", f"--dcp-ckpt-path={step / 'policy'}", f"--hf-ckpt-path={tmp_path / 'hf'}")
    assert (tmp_path / "hf" / "config.json").is_file() and (tmp_path / "hf" / "tokenizer.json").is_file()
