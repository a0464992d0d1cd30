"""DAPO overlong shaping, the stop-properly penalty and reward scaling against hand-worked values."""

from __future__ import annotations

import pytest
import torch

from reinforge.algorithms.rewards import (
    RewardScalingConfig,
    RewardShapingConfig,
    overlong_reward_shaping,
    scale_rewards,
    stop_properly_penalty,
)


def close(actual: torch.Tensor, expected: list[float]) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=actual.dtype), atol=1e-4, rtol=0)


def test_overlong_reward_shaping() -> None:
    shaped = overlong_reward_shaping(torch.tensor([1.0, 0.8, 0.6, 0.4]), torch.tensor([10, 22, 25, 30]), 25, 5, 0.5)
    close(shaped, [1.0, 0.6, 0.1, -0.6])


def test_reward_scaling_clamps_then_maps() -> None:
    scaled = scale_rewards(torch.tensor([-2.8, -0.25, 1.5, 0.5, 2.0, 2.5]), -2.0, 2.0, -1.0, 1.0)
    close(scaled, [-1.0, -0.125, 0.75, 0.25, 1.0, 1.0])


def test_reward_scaling_dapo_binary() -> None:
    close(scale_rewards([0.0, 1.0, 1.0], 0.0, 1.0, -1.0, 1.0), [-1.0, 1.0, 1.0])


def test_configs_apply_or_pass_through() -> None:
    rewards, lengths = torch.tensor([1.0, 0.4]), torch.tensor([10, 30])
    shaping = RewardShapingConfig(enabled=True, max_response_length=25, overlong_buffer_length=5, overlong_buffer_penalty=0.5)
    close(shaping.apply(rewards, lengths), [1.0, -0.6])
    close(RewardShapingConfig().apply(rewards, lengths), [1.0, 0.4])
    scaling = RewardScalingConfig(enabled=True, source_min=0.0, source_max=1.0, target_min=-1.0, target_max=1.0)
    close(scaling.apply(rewards), [1.0, -0.2])
    close(RewardScalingConfig().apply(rewards), [1.0, 0.4])


def test_stop_properly_penalty_scales_truncated_rewards() -> None:
    rewards = torch.tensor([1.0, 1.0, 0.3, -0.5, 0.0])
    truncated = torch.tensor([False, True, True, True, False])
    close(stop_properly_penalty(rewards, truncated, 0.1), [1.0, 0.1, 0.03, -0.05, 0.0])
    close(stop_properly_penalty(rewards, truncated, 0.0), [1.0, 0.0, 0.0, 0.0, 0.0])
    close(stop_properly_penalty(rewards, truncated, 1.0), rewards.tolist())
    shaping = RewardShapingConfig(enabled=True, stop_properly_penalty_coef=0.5)
    close(shaping.apply(rewards, torch.tensor([3, 9, 9, 9, 4]), truncated), [1.0, 0.5, 0.15, -0.25, 0.0])
    with pytest.raises(ValueError, match="truncated flag"):
        shaping.apply(rewards, torch.tensor([3, 9, 9, 9, 4]))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: RewardShapingConfig(enabled=True), "max_response_length is required"),
        (lambda: RewardShapingConfig(enabled=True, max_response_length=4, overlong_buffer_length=4), "must exceed"),
        (lambda: RewardShapingConfig(enabled=True, max_response_length=8, overlong_buffer_length=0), "> 0"),
        (lambda: RewardShapingConfig(enabled=True, max_response_length=8, overlong_buffer_length=2, overlong_buffer_penalty=-1), ">= 0"),
        (lambda: RewardScalingConfig(source_min=1.0, source_max=1.0), "source_max"),
        (lambda: RewardScalingConfig(target_min=2.0, target_max=1.0), "target_max"),
        (lambda: scale_rewards([0.0], 1.0, 0.0, 0.0, 1.0), "source_max"),
        (lambda: overlong_reward_shaping([1.0, 2.0], [3], 10, 2, 1.0), "same shape"),
        (lambda: RewardShapingConfig(stop_properly_penalty_coef=1.5), "stop_properly_penalty_coef"),
        (lambda: RewardShapingConfig(stop_properly_penalty_coef=-0.1), "stop_properly_penalty_coef"),
        (lambda: RewardShapingConfig(enabled=True, stop_properly_penalty_coef=0.0, max_response_length=8), "set one"),
        (lambda: stop_properly_penalty([1.0], [True], 2.0), r"in \[0, 1\]"),
        (lambda: stop_properly_penalty([1.0, 2.0], [True], 0.5), "same shape"),
    ],
)
def test_validation(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()
