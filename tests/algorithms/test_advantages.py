"""Group baselines and GRPO advantages against hand-worked values and an exact rational reimplementation."""

from __future__ import annotations

import math
import random
from fractions import Fraction

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
    # [1, 0, 1]: each 1 faces [0, 1] (mean 0.5, std 0.7071); the 0 faces [1, 1] (std 0: left at 0 - 1)
    close(advantages, [0.0] * 6 + [0.70711, -1.0, 0.70711])


def test_issue_reproducers_one_odd_sample_out() -> None:
    # the shortcut formula gave -9.8957e+05 and -9.9260e+05 for the last samples
    close(grpo_advantages(torch.tensor([1.0, 1.0, 0.0]), 3), [0.70711, 0.70711, -1.0])
    close(grpo_advantages(torch.tensor([1.2, 1.2, 1.2, 0.2]), 4), [0.57735, 0.57735, 0.57735, -1.0])


def test_partial_credit_group_by_hand() -> None:
    # samples 0, 1 face [0.3, 1.2]: mean 0.75, std 0.9 / sqrt(2) = 0.63640 -> -0.45 / 0.63640; sample 2 faces [0.3, 0.3]
    close(grpo_advantages(torch.tensor([0.3, 0.3, 1.2]), 3), [-0.70711, -0.70711, 0.9])
    baseline, std = baseline_and_std_per_group(torch.tensor([0.3, 0.3, 1.2]), 3)
    close(baseline, [0.75, 0.75, 0.3])
    close(std, [0.63640, 0.63640, 0.0])
    # without leave-one-out: mean 0.6, Bessel std sqrt((0.09 * 2 + 0.36) / 2) = 0.51962
    close(grpo_advantages(torch.tensor([0.3, 0.3, 1.2]), 3, leave_one_out=False), [-0.57735, -0.57735, 1.15470])


def test_group_of_sixteen_with_one_success_by_hand() -> None:
    rewards = torch.tensor([1.0] + [0.0] * 15)
    # sample 0 faces fifteen 0s (std 0): 1 - 0 = 1. A 0 faces fourteen 0s and one 1: mean 1/15,
    # Bessel variance ((14/15)^2 + 14 (1/15)^2) / 14 = 1/15 -> -(1/15) / sqrt(1/15) = -0.25820
    close(grpo_advantages(rewards, 16), [1.0] + [-0.25820] * 15)


def test_group_of_twelve_with_one_failure_by_hand() -> None:
    rewards = torch.tensor([1.0] * 11 + [0.0])
    # a 1 faces ten 1s and one 0: mean 10/11, variance 1/11 -> (1/11) / sqrt(1/11) = 0.30151
    close(grpo_advantages(rewards, 12), [0.30151] * 11 + [-1.0])


@pytest.mark.parametrize("size", range(2, 17))
@pytest.mark.parametrize(("common", "odd"), [(1.0, 0.0), (0.0, 1.0), (0.1, 1.0), (0.3, 0.0), (1.2, 0.2), (0.7, 0.1)])
def test_one_odd_sample_out_closed_form(size: int, common: float, odd: float) -> None:
    """G - 1 equal rewards v and one o: the odd sample gets o - v; the others -(o - v)/n / (|o - v|/sqrt(n) + eps)."""
    rewards = torch.tensor([common] * (size - 1) + [odd], dtype=torch.float64)
    n = size - 1  # samples each one is compared with
    gap = odd - common
    equal = -gap if n == 1 else -gap / n / (abs(gap) / math.sqrt(n) + 1e-6)
    close(grpo_advantages(rewards, size), [equal] * (size - 1) + [gap])


@pytest.mark.parametrize("size", range(2, 17))
@pytest.mark.parametrize("leave_one_out", [True, False])
def test_constant_groups_are_exactly_zero(size: int, leave_one_out: bool) -> None:
    for value in [0.0, 1.0, 0.1, 0.3, 1.2, -0.7, 1e6 + 0.1]:
        rewards = torch.full((size * 2,), value, dtype=torch.float32)
        for normalize in (True, False):
            advantages = grpo_advantages(rewards, size, leave_one_out=leave_one_out, normalize=normalize)
            assert advantages.tolist() == [0.0] * (size * 2), value
        assert baseline_and_std_per_group(rewards, size, leave_one_out=leave_one_out)[1].tolist() == [0.0] * (size * 2)


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


# ---------------------------------------------------------------- randomized property test
def reference_advantages(
    rewards: list[float], group_ids: list[int], leave_one_out: bool, normalize: bool, eps: float = 1e-6
) -> list[float]:
    """Straight from the definitions, in exact rational arithmetic (NeMo-RL's semantics).

    Sample i is compared with the rewards of its group (without itself under leave-one-out):
    b_i = their mean (r_i itself when there are none), s_i = their Bessel std (0 for fewer than two);
    A_i = r_i - b_i, divided by (s_i + eps) when normalizing and s_i > 0.
    """
    out = []
    for i, (reward, group) in enumerate(zip(rewards, group_ids, strict=True)):
        compared = [
            Fraction(rewards[j]) for j in range(len(rewards)) if group_ids[j] == group and not (leave_one_out and j == i)
        ]
        mean = sum(compared) / len(compared) if compared else Fraction(reward)
        std = 0.0
        if len(compared) > 1:
            std = math.sqrt(sum((x - mean) ** 2 for x in compared) / (len(compared) - 1))
        advantage = float(Fraction(reward) - mean)
        if normalize and std > 0:
            advantage /= std + eps
        out.append(advantage)
    return out


PARTIAL_CREDIT = [0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.2]


def random_group(rng: random.Random, size: int, kind: str) -> list[float]:
    if kind == "constant":
        return [rng.choice([*PARTIAL_CREDIT, rng.uniform(-3, 3)])] * size
    if kind == "one_odd_out":
        common = rng.choice([*PARTIAL_CREDIT, rng.uniform(-3, 3)])
        odd = rng.choice([x for x in [*PARTIAL_CREDIT, rng.uniform(-3, 3)] if x != common])
        group = [common] * (size - 1) + [odd]
        rng.shuffle(group)
        return group
    if kind == "offset":
        base = rng.choice([1e3, -50.0, 1e5 + 0.3, 7.1])
        return [base + rng.choice([0.0, 1.0, 0.5]) for _ in range(size)]
    if kind == "partial_credit":
        return [rng.choice(PARTIAL_CREDIT) for _ in range(size)]
    return [rng.gauss(0.0, rng.choice([0.01, 1.0, 10.0])) for _ in range(size)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matches_exact_reimplementation_on_random_groups(dtype: torch.dtype) -> None:
    rng = random.Random(12)
    kinds = ["constant", "one_odd_out", "offset", "partial_credit", "random"]
    for case in range(500):
        num_groups = rng.randint(1, 4)
        rewards: list[float] = []
        ids: list[int] = []
        group_id_values = rng.sample(range(-5, 100), num_groups)  # arbitrary ids, not 0..K-1
        same_size = rng.random() < 0.5
        size = rng.randint(1, 16)
        for group_id in group_id_values:
            group_size = size if same_size else rng.randint(1, 16)
            rewards += random_group(rng, group_size, rng.choice(kinds))
            ids += [group_id] * group_size
        order = list(range(len(rewards)))
        contiguous = same_size and rng.random() < 0.5
        if not contiguous:
            rng.shuffle(order)  # arbitrary group-id order
        rewards = [rewards[i] for i in order]
        ids = [ids[i] for i in order]
        tensor = torch.tensor(rewards, dtype=dtype)
        exact_inputs = tensor.tolist()  # what the tensor holds (float32-rounded for float32)
        groups = size if contiguous else torch.tensor(ids)
        for leave_one_out in (True, False):
            for normalize in (True, False):
                actual = grpo_advantages(tensor, groups, leave_one_out=leave_one_out, normalize=normalize)
                expected = reference_advantages(exact_inputs, ids, leave_one_out, normalize)
                assert actual.dtype == dtype
                torch.testing.assert_close(
                    actual.to(torch.float64),
                    torch.tensor(expected, dtype=torch.float64),
                    atol=1e-6,
                    rtol=1e-6,
                    msg=lambda m, c=case, lo=leave_one_out, no=normalize: f"case {c} loo={lo} normalize={no}: {m}",
                )
