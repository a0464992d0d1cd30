"""GRPO's multi-turn settings and reports: multi_turn_reward, turn metrics, reward components, sample logs."""

from __future__ import annotations

import pytest
import torch

from reinforge.algorithms.grpo import GRPO
from reinforge.algorithms.grpo_config import GRPOConfig
from reinforge.algorithms.grpo_metrics import rollout_metrics, sample_records
from reinforge.core.batch import Batch
from reinforge.core.errors import ReinforgeError
from reinforge.core.load import load_config
from reinforge.rollouts.groups import concat_results, select_rows
from reinforge.rollouts.turns import RolloutResult
from tests.integration.grpo_helpers import CPU_RECIPE

SYSTEM = {"role": "system", "content": "Be brief."}
EXAMPLE = [{"role": "user", "content": "What is 1 + 1?"}, {"role": "assistant", "content": "\\boxed{2}"}]
QUESTION = {"role": "user", "content": "What is 2 + 2?"}


def result() -> RolloutResult:
    prompt = [SYSTEM, *EXAMPLE, QUESTION]
    conversations = [
        [{"role": "assistant", "content": "\\boxed{4}"}],
        [{"role": "assistant", "content": "<calculator>2+2</calculator>"}, {"role": "tool", "content": "4"},
         {"role": "assistant", "content": "\\boxed{4}"}],
        [{"role": "assistant", "content": "5?"}, {"role": "user", "content": "Try again."}, {"role": "assistant", "content": "6?"}],
        [{"role": "assistant", "content": "hm"}, {"role": "user", "content": "Try again."}, {"role": "assistant", "content": "hm"},
         {"role": "user", "content": "Try again."}, {"role": "assistant", "content": "hm"}],
    ]
    batch = Batch(
        input_ids=torch.ones(4, 6, dtype=torch.long), input_lengths=torch.full((4,), 6), prompt_lengths=torch.full((4,), 2),
        token_mask=torch.tensor([[0, 0, 1, 1, 0, 0], [0, 0, 1, 0, 1, 1], [0, 0, 1, 0, 0, 1], [0, 0, 1, 0, 1, 0]], dtype=torch.float32),
        truncated=torch.tensor([False, False, True, False]),
    )
    batch["messages"] = [prompt + c for c in conversations]
    batch["metadata"] = [{"answer": "4"}] * 4
    return RolloutResult(
        batch=batch, rewards=torch.tensor([1.0, 0.9, 0.2, -0.3]), responses=["", "", "", ""], env_metrics={"tool_calls": 1.0},
        turns=[1, 2, 2, 3], info=[{}] * 4, correct=torch.tensor([True, True, False, False]),
        last_rewards=torch.tensor([1.0, 1.0, 0.1, -0.1]), max_turns_reached=torch.tensor([False, False, False, True]),
        reward_components=[{"answer": 1.0}, {"answer": 1.0, "invalid_call": -0.1}, {}, {"invalid_call": -0.3}],
        prompt_messages=[4] * 4,
    )


def test_turn_metrics_and_reward_components_by_hand():
    rollouts = result()
    metrics = rollout_metrics(rollouts, rollouts.rewards, rollouts.batch, torch.zeros(4), prefix="train/")
    assert metrics["train/turns_mean"] == 2.0 and metrics["train/turns_max"] == 3.0
    assert metrics["train/max_turns_reached_rate"] == 0.25 and metrics["train/truncation_rate"] == 0.25
    assert metrics["train/reward/answer_mean"] == pytest.approx(0.5)  # (1 + 1 + 0 + 0) / 4
    assert metrics["train/reward/invalid_call_mean"] == pytest.approx(-0.1)  # (-0.1 - 0.3) / 4
    assert metrics["env/tool_calls"] == 1.0


def test_sample_logs_carry_the_prompt_and_the_whole_conversation():
    records = sample_records(result(), torch.zeros(4), torch.zeros(4), count=4)
    assert [r["prompt"] for r in records] == ["What is 2 + 2?"] * 4  # not the last observation ("Try again.")
    assert records[3]["conversation"][1] == {"role": "user", "content": "Try again."} and len(records[3]["conversation"]) == 5
    assert records[1]["conversation"][1]["role"] == "tool" and records[1]["turns"] == 2


def test_multi_turn_reward_sum_or_last():
    rollouts = result()
    assert GRPO(GRPOConfig())._episode_rewards(rollouts).tolist() == pytest.approx([1.0, 0.9, 0.2, -0.3])
    assert GRPO(GRPOConfig(multi_turn_reward="last"))._episode_rewards(rollouts).tolist() == pytest.approx([1.0, 1.0, 0.1, -0.1])


def test_multi_turn_reward_must_be_sum_or_last():
    with pytest.raises(ReinforgeError, match=r"'average' is not one of 'sum', 'last'.*grpo\.multi_turn_reward"):
        load_config(CPU_RECIPE, ["grpo.multi_turn_reward=average"])


def test_selecting_and_joining_rows_keeps_the_multi_turn_fields():
    rollouts = result()
    picked = select_rows(rollouts, [3, 1])
    assert picked.last_rewards.tolist() == pytest.approx([-0.1, 1.0]) and picked.max_turns_reached.tolist() == [True, False]
    assert picked.reward_components == [{"invalid_call": -0.3}, {"answer": 1.0, "invalid_call": -0.1}]
    joined = concat_results([picked, select_rows(rollouts, [0])])
    assert joined.prompt_messages == [4, 4, 4] and joined.last_rewards.tolist() == pytest.approx([-0.1, 1.0, 1.0])
