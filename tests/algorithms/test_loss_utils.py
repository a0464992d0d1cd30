"""masked reductions and the k1/k2/k3 KL estimators, against hand-worked values."""

from __future__ import annotations

import math

import pytest
import torch

from reinforge.algorithms.losses import kl_penalty, masked_mean, masked_sum

REFERENCE = torch.tensor([0.0, -15.0, -30.0])


def test_masked_mean_all_zero_mask_is_zero_not_nan() -> None:
    values = torch.tensor([[1.0, float("-inf"), float("nan")]])
    mask = torch.zeros(1, 3)
    assert masked_mean(values, mask).item() == 0.0
    assert masked_mean(values, mask, dim=-1).tolist() == [0.0]
    assert masked_mean(values, mask, global_normalization_factor=torch.tensor(0.0)).item() == 0.0


def test_masked_reductions_ignore_garbage_outside_the_mask() -> None:
    values = torch.tensor([[2.0, 4.0, float("-inf")], [1.0, float("nan"), 3.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.5]])
    assert masked_sum(values, mask).item() == pytest.approx(8.5)
    assert masked_mean(values, mask, dim=-1).tolist() == pytest.approx([3.0, 2.5 / 1.5])
    assert masked_mean(values, mask, global_normalization_factor=10.0).item() == pytest.approx(0.85)
    masked_sum(values, mask).backward()
    assert values.grad.tolist() == [[1.0, 1.0, 0.0], [1.0, 0.0, 0.5]]


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("k1", [-1.0, 14.0, 29.0]), ("k2", [0.5, 98.0, 420.5]), ("k3", [math.e - 2, 13.0, 28.0])],
)
def test_kl_estimators_without_effective_clamps(kind: str, expected: list[float]) -> None:
    kl = kl_penalty(torch.full((3,), -1.0), REFERENCE, kind=kind, input_clamp=100.0, output_clamp=1000.0)
    torch.testing.assert_close(kl, torch.tensor(expected), atol=1e-4, rtol=0)
    # None disables a clamp as well
    torch.testing.assert_close(kl_penalty(torch.full((3,), -1.0), REFERENCE, kind, None, None), kl)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("k1", [-1.0, 10.0, 10.0]), ("k2", [0.5, 10.0, 10.0]), ("k3", [0.7183, 10.0, 10.0])],
)
def test_kl_estimators_with_default_clamps(kind: str, expected: list[float]) -> None:
    kl = kl_penalty(torch.full((3,), -1.0), REFERENCE, kind=kind, input_clamp=20.0, output_clamp=10.0)
    torch.testing.assert_close(kl, torch.tensor(expected), atol=1e-4, rtol=0)


def test_kl_detaches_weight_where_input_is_clamped() -> None:
    logprobs = torch.tensor([-3.0, -1.0], requires_grad=True)
    kl = kl_penalty(logprobs, torch.zeros(2), "k3", input_clamp=2.0, output_clamp=None)
    torch.testing.assert_close(kl, torch.tensor([math.exp(2) - 3, math.e - 2]), atol=1e-5, rtol=0)
    kl.sum().backward()
    # clamped token: no gradient at all; free token: k3 + 1 - e^logr = (e - 2) + 1 - e = -1
    torch.testing.assert_close(logprobs.grad, torch.tensor([0.0, -1.0]), atol=1e-5, rtol=0)


def test_kl_output_clamp_cuts_gradient() -> None:
    logprobs = torch.tensor([-1.0], requires_grad=True)
    kl = kl_penalty(logprobs, torch.tensor([-30.0]), "k3")  # k3 = 19 after the input clamp, clamped to 10
    assert kl.item() == pytest.approx(10.0)
    kl.sum().backward()
    assert logprobs.grad.item() == 0.0


def test_kl_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown KL estimator 'k5'"):
        kl_penalty(torch.zeros(1), torch.zeros(1), "k5")
