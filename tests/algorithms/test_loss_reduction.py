"""`loss_fn.loss_reduction`: how per-token policy-gradient losses become one number, by hand, and how it
relates to NeMo-RL's `token_level_loss` (microbatch invariance and random batches: test_losses_pg.py and
test_loss_properties.py)."""

from __future__ import annotations

import pytest
import torch

from reinforge.algorithms.losses_pg import ClippedPGLoss, ClippedPGLossConfig

# REINFORCE (l = -A log pi) with log pi = -1 everywhere makes every token's loss its advantage A.
# Row 0: 3 tokens, A = 1; row 1: 1 token, A = 2; row 2: sample_mask 0 (counts nowhere).
TOKEN_MASK = torch.tensor([[0.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0]])
SAMPLE_MASK = torch.tensor([1.0, 1.0, 0.0])
ADVANTAGES = torch.tensor([1.0, 2.0, 5.0])  # [B], broadcast over tokens


def run(**options: object) -> tuple[float, torch.Tensor]:
    logprobs = torch.full((3, 4), -1.0, requires_grad=True)
    batch = {"token_mask": TOKEN_MASK, "sample_mask": SAMPLE_MASK, "advantages": ADVANTAGES}
    tokens = (TOKEN_MASK * SAMPLE_MASK[:, None]).sum()  # 4
    loss, _ = ClippedPGLoss(ClippedPGLossConfig(disable_ppo_ratio=True, **options))(logprobs, batch, tokens, SAMPLE_MASK.sum())
    loss.backward()
    return loss.item(), logprobs.grad


def test_token_mean_by_hand() -> None:
    # (1 + 1 + 1 + 2) / 4 tokens = 1.25; d/d log pi = -A / 4
    loss, grad = run(loss_reduction="token_mean")
    assert loss == pytest.approx(1.25)
    torch.testing.assert_close(grad, torch.tensor([[0, -0.25, -0.25, -0.25], [0, 0, 0, -0.5], [0, 0, 0, 0]]))


def test_seq_mean_token_mean_by_hand() -> None:
    # (mean(1, 1, 1) + mean(2)) / 2 sequences = 1.5; d/d log pi = -A / n_tokens(row) / 2
    loss, grad = run(loss_reduction="seq_mean_token_mean")
    assert loss == pytest.approx(1.5)
    torch.testing.assert_close(grad, torch.tensor([[0, -1 / 6, -1 / 6, -1 / 6], [0, 0, 0, -1.0], [0, 0, 0, 0]]))


def test_seq_sum_constant_by_hand() -> None:
    # Dr. GRPO: (sum(1, 1, 1) / 4 + sum(2) / 4) / 2 sequences = (0.75 + 0.5) / 2 = 0.625; d/d log pi = -A / 4 / 2:
    # every token of every sequence weighs the same, whatever the sequence's length
    loss, grad = run(loss_reduction="seq_sum_constant", loss_reduction_constant=4.0)
    assert loss == pytest.approx(0.625)
    torch.testing.assert_close(grad, torch.tensor([[0, -0.125, -0.125, -0.125], [0, 0, 0, -0.25], [0, 0, 0, 0]]))
    loss, _ = run(loss_reduction="seq_sum_constant", loss_reduction_constant=10.0)  # (3 / 10 + 2 / 10) / 2
    assert loss == pytest.approx(0.25)


def test_token_level_loss_maps_onto_loss_reduction() -> None:
    assert ClippedPGLossConfig().reduction == "token_mean"  # NeMo-RL's default
    assert ClippedPGLossConfig(token_level_loss=False).reduction == "seq_mean_token_mean"
    assert ClippedPGLossConfig(token_level_loss=False, loss_reduction="seq_mean_token_mean").reduction == "seq_mean_token_mean"
    # true is the default too, so an explicit loss_reduction takes precedence (a recipe that spells out
    # token_level_loss: true can switch to Dr. GRPO's reduction with one override)
    dr_grpo = ClippedPGLossConfig(token_level_loss=True, loss_reduction="seq_sum_constant", loss_reduction_constant=8.0)
    assert dr_grpo.reduction == "seq_sum_constant"
    default_loss, default_grad = run()
    token_loss, token_grad = run(loss_reduction="token_mean")
    assert default_loss == token_loss and torch.equal(default_grad, token_grad)
    false_loss, false_grad = run(token_level_loss=False)
    assert false_loss == pytest.approx(1.5) and torch.equal(false_grad, run(loss_reduction="seq_mean_token_mean")[1])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"token_level_loss": False, "loss_reduction": "seq_sum_constant", "loss_reduction_constant": 8.0},
         "token_level_loss=false means loss_reduction seq_mean_token_mean, but loss_reduction is seq_sum_constant"),
        ({"token_level_loss": False, "loss_reduction": "token_mean"},
         "token_level_loss=false means loss_reduction seq_mean_token_mean, but loss_reduction is token_mean"),
        ({"loss_reduction": "seq_sum_constant"}, "seq_sum_constant needs loss_reduction_constant"),
        ({"loss_reduction_constant": 8.0}, r"loss_reduction_constant \(8.0\) is used only by loss_reduction seq_sum_constant"),
        ({"loss_reduction": "seq_sum_constant", "loss_reduction_constant": 0.0}, "loss_reduction_constant must be > 0"),
        ({"loss_reduction": "seq_sum"}, "loss_reduction must be one of null, 'token_mean'"),
        ({"sequence_level_importance_ratios": True, "loss_reduction": "token_mean"}, "GSPO"),
        ({"use_cispo": True, "loss_reduction": "seq_sum_constant", "loss_reduction_constant": 8.0},
         "use_cispo needs token_level_loss=true / loss_reduction token_mean"),
    ],
)
def test_conflicts_are_config_errors(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClippedPGLossConfig(**options)


def test_gspo_takes_either_per_sequence_reduction() -> None:
    assert ClippedPGLossConfig(sequence_level_importance_ratios=True, loss_reduction="seq_sum_constant", loss_reduction_constant=8.0)
    assert ClippedPGLossConfig(sequence_level_importance_ratios=True, loss_reduction="seq_mean_token_mean")
