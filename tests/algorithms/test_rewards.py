"""DAPO overlong shaping and reward scaling against hand-worked values."""

from __future__ import annotations

import pytest
import torch

from reinforge.algorithms.rewards import RewardScalingConfig, RewardShapingConfig, overlong_reward_shaping, scale_rewards


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
    ],
)
def test_validation(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()
