"""Group baselines and GRPO advantages against hand-worked values."""

from __future__ import annotations

import pytest
import torch

from reinforge.algorithms.advantages import baseline_and_std_per_group, group_has_variance, grpo_advantages


def close(actual: torch.Tensor, expected: list[float]) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=actual.dtype), atol=1e-4, rtol=0)


def test_leave_one_out_two_prompts_of_three() -> None:
    baseline, std = baseline_and_std_per_group(torch.arange(1.0, 7.0), 3)
    close(baseline, [2.5, 2.0, 1.5, 5.5, 5.0, 4.5])
    close(std, [0.7071, 1.4142, 0.7071] * 2)


def test_group_mean_and_bessel_std_without_leave_one_out() -> None:
    baseline, std = baseline_and_std_per_group(torch.arange(1.0, 7.0), 3, leave_one_out=False)
    close(baseline, [2.0, 2.0, 2.0, 5.0, 5.0, 5.0])
    close(std, [1.0] * 6)


def test_mixed_group_sizes_from_ids() -> None:
    baseline, std = baseline_and_std_per_group(torch.tensor([1.0, 2.0, 4.0, 5.0, 6.0]), [0, 0, 7, 7, 7])
    close(baseline, [2.0, 1.0, 5.5, 5.0, 4.5])
    close(std, [0.0, 0.0, 0.7071, 1.4142, 0.7071])  # one "other" has no std


def test_group_ids_need_not_be_contiguous() -> None:
    baseline, _ = baseline_and_std_per_group([1.0, 5.0, 3.0, 7.0], torch.tensor([1, 0, 1, 0]))
    close(baseline, [3.0, 7.0, 1.0, 5.0])


@pytest.mark.parametrize("leave_one_out", [True, False])
def test_single_generation_per_prompt(leave_one_out: bool) -> None:
    rewards = torch.tensor([0.3, 1.0, -2.0])
    baseline, std = baseline_and_std_per_group(rewards, 1, leave_one_out=leave_one_out)
    close(baseline, rewards.tolist())
    close(std, [0.0, 0.0, 0.0])
    close(grpo_advantages(rewards, 1, leave_one_out=leave_one_out), [0.0, 0.0, 0.0])


def test_large_rewards_keep_precision() -> None:
    rewards = torch.tensor([1e8 + 1, 1e8 + 2, 1e8 + 3], dtype=torch.float64)
    _, std = baseline_and_std_per_group(rewards, 3)
    close(std, [0.7071, 1.4142, 0.7071])


def test_zero_variance_groups_get_zero_advantage() -> None:
    advantages = grpo_advantages(torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0]), 3)
    close(advantages[:6], [0.0] * 6)
    assert advantages[6:].abs().min() > 0


def test_advantages_leave_one_out_and_group_normalised() -> None:
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0])
    # LOO: sample 0 vs others [0, 0, 0] (std 0: left unnormalised); samples 1..3: 0 - 1/3 over std sqrt(1/3)
    close(grpo_advantages(rewards, 4), [1.0, -0.57735, -0.57735, -0.57735])
    close(grpo_advantages(rewards, 4, normalize=False), [1.0, -1 / 3, -1 / 3, -1 / 3])
    # group mean 0.25, Bessel std 0.5
    close(grpo_advantages(rewards, 4, leave_one_out=False), [1.5, -0.5, -0.5, -0.5])
    close(grpo_advantages(rewards, 4, leave_one_out=False, clip_low=-0.4, clip_high=1.0), [1.0, -0.4, -0.4, -0.4])


def test_group_has_variance_marks_whole_groups() -> None:
    keep = group_has_variance(torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 0.0]), 3)
    assert keep.tolist() == [False, False, False, True, True, True]
    assert group_has_variance([2.0, 3.0, 2.0, 2.0], [0, 1, 1, 0]).tolist() == [False, True, True, False]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: baseline_and_std_per_group(torch.ones(5), 2), "divide the number of samples"),
        (lambda: baseline_and_std_per_group(torch.ones(4), [0, 1]), "one group id per sample"),
        (lambda: baseline_and_std_per_group(torch.ones(2, 2), 2), "1-D"),
        (lambda: grpo_advantages(torch.ones(4), 2, clip_low=1.0, clip_high=0.0), "clip_low"),
    ],
)
def test_invalid_arguments(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
