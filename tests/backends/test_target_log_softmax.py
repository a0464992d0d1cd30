"""`TargetLogSoftmax` (the head's log-softmax at the target ids, one autograd node) against float64 references."""

from __future__ import annotations

import pytest
import torch

from reinforge.backends.training.dtensor.logprobs import TargetLogSoftmax


def _reference(logits: torch.Tensor, targets: torch.Tensor, temperature: float, upstream: torch.Tensor):
    """Value and gradient in float64 by the textbook formulas, written out (no autograd)."""
    x = logits.double() / temperature
    lse = x.max(-1, keepdim=True).values + (x - x.max(-1, keepdim=True).values).exp().sum(-1, keepdim=True).log()
    picked = (x - lse).gather(-1, targets[:, None]).squeeze(-1)
    softmax = (x - lse).exp()
    onehot = torch.nn.functional.one_hot(targets, logits.shape[-1]).double()
    grad = (onehot - softmax) * upstream.double()[:, None] / temperature
    return picked, grad


@pytest.mark.parametrize("overwrite", [False, True], ids=["new-gradient", "over-the-logits"])
def test_values_and_gradients_equal_a_float64_reference_on_random_cases(overwrite):
    generator = torch.Generator().manual_seed(0)
    for case in range(300):
        n = int(torch.randint(1, 40, (1,), generator=generator))
        vocab = int(torch.randint(2, 300, (1,), generator=generator))
        spread = float(10 ** torch.empty(1).uniform_(-2, 2.5, generator=generator))  # logits up to ~300 apart
        temperature = [1.0, 0.6, 1.7][case % 3]
        leaf = (torch.randn(n, vocab, generator=generator) * spread).requires_grad_()
        logits = leaf * 1.0  # a temporary of this call, as lm_head's output is
        targets = torch.randint(0, vocab, (n,), generator=generator)
        upstream = torch.randn(n, generator=generator)
        want_value, want_grad = _reference(leaf.detach(), targets, temperature, upstream)
        picked = TargetLogSoftmax.apply(logits, targets, temperature, overwrite)
        (grad,) = torch.autograd.grad(picked, leaf, upstream)
        assert picked.dtype == torch.float32 and grad.dtype == torch.float32
        # float32 logits of size ~spread: the log-sum-exp keeps ~7 significant digits of them.
        torch.testing.assert_close(picked.double(), want_value, rtol=1e-5, atol=1e-5 * max(spread, 1.0), msg=f"case {case}")
        torch.testing.assert_close(grad.double(), want_grad, rtol=1e-4, atol=1e-6, msg=f"case {case}")


def test_it_equals_the_composed_torch_ops_it_replaces():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(64, 1000, generator=generator).requires_grad_()
    targets = torch.randint(0, 1000, (64,), generator=generator)
    upstream = torch.randn(64, generator=generator)
    for temperature in (1.0, 0.7):
        fused = TargetLogSoftmax.apply(logits, targets, temperature)
        composed = torch.log_softmax(logits / temperature, -1).gather(-1, targets[:, None]).squeeze(-1)
        torch.testing.assert_close(fused, composed, rtol=1e-6, atol=1e-6)
        (a,) = torch.autograd.grad(fused, logits, upstream)
        (b,) = torch.autograd.grad(composed, logits, upstream)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_gradcheck_in_float64(temperature):
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn(5, 7, dtype=torch.float64, generator=generator).requires_grad_()
    targets = torch.tensor([0, 6, 3, 3, 1])
    assert torch.autograd.gradcheck(lambda x: TargetLogSoftmax.apply(x, targets, temperature), (logits,))


def test_overwriting_is_opt_in_and_a_second_backward_over_overwritten_logits_fails_loudly():
    logits = torch.randn(4, 9).requires_grad_()
    kept = logits.detach().clone()
    picked = TargetLogSoftmax.apply(logits, torch.tensor([1, 2, 3, 4]), 1.0)
    picked.sum().backward()
    assert torch.equal(logits.detach(), kept)  # the default leaves the caller's logits alone
    temporary = logits * 1.0
    picked = TargetLogSoftmax.apply(temporary, torch.tensor([1, 2, 3, 4]), 1.0, True)
    picked.sum().backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        picked.sum().backward()


def test_saturated_logits_stay_finite():
    """A target 1000 logits below the rest: log-probability -1000, gradient -1 at the target's rivals, no NaN."""
    logits = torch.zeros(1, 3)
    logits[0, 0] = -1000.0
    logits.requires_grad_()
    picked = TargetLogSoftmax.apply(logits, torch.tensor([0]), 1.0)
    (grad,) = torch.autograd.grad(picked, logits, torch.ones(1))
    assert picked.item() == pytest.approx(-1000.0 - torch.log(torch.tensor(2.0)).item(), abs=1e-3)
    torch.testing.assert_close(grad, torch.tensor([[1.0, -0.5, -0.5]]))
