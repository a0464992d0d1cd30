"""NLLLoss and DPOLoss against hand-worked cases, with logprobs built from logits as a backend would."""

from __future__ import annotations

import math

import pytest
import torch

from reinforge.algorithms.losses import DPOLoss, DPOLossConfig, NLLLoss


def token_logprobs(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:  # [B, T]
    """logprobs[:, t] = log p(input_ids[:, t] | < t) from logits[:, t - 1]; column 0 is 0."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # [B, T-1, V]
    gathered = logp.gather(-1, input_ids[:, 1:, None]).squeeze(-1)  # [B, T-1]
    return torch.cat([torch.zeros_like(gathered[:, :1]), gathered], dim=1)


def counts(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    mask = batch["token_mask"] * batch["sample_mask"][:, None]
    return mask.sum(), batch["sample_mask"].sum()


NLL_IDS = torch.tensor([[0, 1, 2, 3]])
NLL_BATCH = {"token_mask": torch.tensor([[0.0, 0.0, 1.0, 1.0]]), "sample_mask": torch.tensor([1.0])}


@pytest.mark.parametrize(("offset", "expected"), [(0, 0.0), (1, 999.0)], ids=["correct", "wrong"])
def test_nll_loss(offset: int, expected: float) -> None:
    vocab = 8
    logits = torch.zeros(1, 4, vocab)
    for t in range(3):  # logits at t predict token t + 1
        logits[0, t, (NLL_IDS[0, t + 1] + offset) % vocab] = 999.0
    logprobs = token_logprobs(logits, NLL_IDS)
    loss, metrics = NLLLoss()(logprobs, NLL_BATCH, *counts(NLL_BATCH))
    assert loss.item() == pytest.approx(expected, abs=1e-4)
    assert metrics["num_unmasked_tokens"] == 2.0


def dpo_batch(rows: int = 2) -> tuple[torch.Tensor, dict]:
    """Zero logits over a vocabulary of 16; each row has 2 response tokens (positions 2, 3)."""
    input_ids = torch.arange(4).repeat(rows, 1)
    logprobs = token_logprobs(torch.zeros(rows, 4, 16), input_ids)
    batch = {
        "token_mask": torch.tensor([[0.0, 0.0, 1.0, 1.0]]).repeat(rows, 1),
        "sample_mask": torch.ones(rows),
        "reference_logprobs": logprobs.clone(),
    }
    return logprobs, batch


def test_dpo_zero_logits_gives_log_two() -> None:
    logprobs, batch = dpo_batch()
    loss, metrics = DPOLoss(DPOLossConfig(reference_policy_kl_penalty=0.0))(logprobs, batch, *counts(batch))
    assert loss.item() == pytest.approx(math.log(2), abs=1e-4)
    assert metrics["preference_loss"] == pytest.approx(0.6931, abs=1e-4)
    assert metrics["accuracy"] == 0.0  # r_c == r_r is not a win


def test_dpo_with_sft_term() -> None:
    logprobs, batch = dpo_batch()
    config = DPOLossConfig(reference_policy_kl_penalty=0.0, sft_loss_weight=0.5)
    loss, metrics = DPOLoss(config)(logprobs, batch, *counts(batch))
    assert loss.item() == pytest.approx(0.5 * (2 * math.log(16)) + math.log(2), abs=1e-4)
    assert loss.item() == pytest.approx(3.466, abs=1e-3)
    assert metrics["sft_loss"] == pytest.approx(2 * math.log(16), abs=1e-4)

    averaged = DPOLossConfig(reference_policy_kl_penalty=0.0, sft_loss_weight=0.5, sft_average_log_probs=True)
    loss, _ = DPOLoss(averaged)(logprobs, batch, *counts(batch))
    assert loss.item() == pytest.approx(0.5 * math.log(16) + math.log(2), abs=1e-4)


def test_dpo_hand_worked_margin_and_metrics() -> None:
    _, batch = dpo_batch()
    reference = batch["reference_logprobs"]
    logprobs = reference.clone()
    logprobs[0, 2:] += 1.0  # r_chosen = +2 over two tokens
    logprobs[1, 2:] -= 0.5  # r_rejected = -1
    logprobs.requires_grad_()
    loss, metrics = DPOLoss(DPOLossConfig(reference_policy_kl_penalty=0.1))(logprobs, batch, *counts(batch))
    assert loss.item() == pytest.approx(math.log1p(math.exp(-0.3)), abs=1e-5)
    assert metrics["accuracy"] == 1.0
    # unscaled log-ratios, as NeMo-RL reports them (beta * r would be 0.2 and -0.1)
    assert metrics["rewards_chosen_mean"] == pytest.approx(2.0, abs=1e-5)
    assert metrics["rewards_rejected_mean"] == pytest.approx(-1.0, abs=1e-5)
    assert metrics["reward_margin"] == pytest.approx(3.0, abs=1e-5)
    assert metrics["num_valid_samples"] == 1.0  # one pair
    loss.backward()
    slope = 0.1 * torch.sigmoid(torch.tensor(-0.3)).item()  # d/dr_c of softplus(-beta (r_c - r_r))
    torch.testing.assert_close(logprobs.grad[:, 2:], torch.tensor([[-slope] * 2, [slope] * 2]), atol=1e-6, rtol=0)

    averaged = DPOLossConfig(reference_policy_kl_penalty=0.1, preference_average_log_probs=True)
    loss, _ = DPOLoss(averaged)(logprobs, batch, *counts(batch))  # r_c = 1, r_r = -0.5 per token
    assert loss.item() == pytest.approx(math.log1p(math.exp(-0.15)), abs=1e-5)


def test_dpo_rejects_unpaired_rows_and_bad_config() -> None:
    logprobs, batch = dpo_batch(rows=3)
    with pytest.raises(ValueError, match="odd number of rows"):
        DPOLoss()(logprobs, batch, *counts(batch))
    with pytest.raises(ValueError, match="reference_policy_kl_penalty must be >= 0"):
        DPOLossConfig(reference_policy_kl_penalty=-0.1)
    with pytest.raises(ValueError, match="both 0"):
        DPOLossConfig(preference_loss_weight=0.0)


def random_pairs(generator: torch.Generator, rows: int = 8, width: int = 6) -> tuple[torch.Tensor, dict]:
    token_mask = (torch.rand(rows, width, generator=generator) > 0.3).float()
    token_mask[:, 0] = 0.0
    pair_mask = torch.tensor([1.0, 0.0, 1.0, 1.0])[: rows // 2]
    logprobs = (-torch.rand(rows, width, generator=generator) * 4).requires_grad_()
    batch = {
        "token_mask": token_mask,
        "sample_mask": pair_mask.repeat_interleave(2),  # both rows of a pair share the mask
        "reference_logprobs": -torch.rand(rows, width, generator=generator) * 4,
    }
    return logprobs, batch


@pytest.mark.parametrize(
    "loss_fn",
    [NLLLoss(), DPOLoss(DPOLossConfig(reference_policy_kl_penalty=0.2, sft_loss_weight=0.3, preference_average_log_probs=True))],
    ids=["nll", "dpo"],
)
@pytest.mark.parametrize("chunks", [2, 4])
def test_microbatch_invariance(loss_fn, chunks: int) -> None:
    logprobs, batch = random_pairs(torch.Generator().manual_seed(1))
    tokens, seqs = counts(batch)
    full_loss, full_metrics = loss_fn(logprobs, batch, tokens, seqs)
    (full_grad,) = torch.autograd.grad(full_loss, logprobs)
    total = torch.tensor(0.0)
    summed: dict[str, float] = {}
    for rows in torch.arange(8).chunk(chunks):  # 4 or 2 rows: pairs stay together
        loss, metrics = loss_fn(logprobs[rows], {k: v[rows] for k, v in batch.items()}, tokens, seqs)
        total = total + loss
        for key, value in metrics.items():
            summed[key] = summed.get(key, 0.0) + value
    (split_grad,) = torch.autograd.grad(total, logprobs)
    assert total.item() == pytest.approx(full_loss.item(), abs=1e-5)
    torch.testing.assert_close(split_grad, full_grad, atol=1e-6, rtol=1e-5)
    for key, value in full_metrics.items():
        assert summed[key] == pytest.approx(value, abs=1e-5), key
