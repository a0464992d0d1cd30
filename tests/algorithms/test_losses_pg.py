"""ClippedPGLoss against hand-worked cases (NeMo-RL's loss tests), plus split invariance and gradients."""

from __future__ import annotations

import math

import pytest
import torch

from reinforge.algorithms.losses import ClippedPGLoss, ClippedPGLossConfig

# One row, four columns; column 0 (no prefix) is masked out, positions 1..3 are scored.
TOKEN_MASK = [0.0, 1.0, 1.0, 1.0]


def one_row_batch(advantages: list[float], prev: list[float] | float, gen: list[float] | float | None = None, **extra):
    """A plain-dict batch of one row whose per-token columns get a leading unused column 0."""

    def row(values: list[float] | float) -> torch.Tensor:
        values = [values] * 3 if isinstance(values, float | int) else values
        return torch.tensor([[0.0, *values]])

    batch = {
        "token_mask": torch.tensor([TOKEN_MASK]),
        "sample_mask": torch.tensor([1.0]),
        "advantages": row(advantages),
        "prev_logprobs": row(prev),
        "generation_logprobs": row(prev if gen is None else gen),
    }
    batch.update({key: row(value) for key, value in extra.items()})
    return batch


def policy(logprobs: list[float]) -> torch.Tensor:
    return torch.tensor([[0.0, *logprobs]], requires_grad=True)


def run(config: ClippedPGLossConfig, logprobs: torch.Tensor, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
    mask = batch["token_mask"] * batch["sample_mask"][:, None]
    return ClippedPGLoss(config)(logprobs, batch, mask.sum(), batch["sample_mask"].sum())


RATIO_LOGPROBS = [-1.69315, -1.0, -0.59453]  # ratios [0.5, 1, 1.5] against logpi_old = -1


def test_ppo_clipping_matches_hand_value_and_cuts_gradient_where_clipped() -> None:
    logprobs = policy(RATIO_LOGPROBS)
    loss, metrics = run(ClippedPGLossConfig(), logprobs, one_row_batch([1.0, -1.0, 2.0], -1.0))
    # per token: max(-0.5, -0.8) = -0.5, 1, max(-3, -2.4) = -2.4 -> mean -1.9 / 3
    assert loss.item() == pytest.approx(-0.6333, abs=1e-4)
    assert metrics["loss"] == pytest.approx(-0.6333, abs=1e-4)
    assert metrics["probs_ratio"] == pytest.approx(1.0, abs=1e-4)
    assert metrics["probs_ratio_min"] == pytest.approx(0.5, abs=1e-4)
    assert metrics["probs_ratio_max"] == pytest.approx(1.5, abs=1e-4)
    assert metrics["probs_ratio_clamped"] == pytest.approx((0.8 + 1.0 + 1.2) / 3, abs=1e-4)
    assert metrics["clip_fraction"] == pytest.approx(1 / 3, abs=1e-6)
    loss.backward()
    # d(-A r)/d logpi = -A r / N for the unclipped tokens; 0 for the clipped one (and column 0)
    expected = torch.tensor([[0.0, -0.5 / 3, 1.0 / 3, 0.0]])
    torch.testing.assert_close(logprobs.grad, expected, atol=1e-4, rtol=0)


def test_reinforce_mode_uses_logprobs_directly() -> None:
    logprobs = policy([-0.5, -1.0, -1.5])
    config = ClippedPGLossConfig(disable_ppo_ratio=True)
    loss, _ = run(config, logprobs, one_row_batch([1.0, -1.0, 2.0], -1.0))
    assert loss.item() == pytest.approx(0.8333, abs=1e-4)
    loss.backward()
    torch.testing.assert_close(logprobs.grad, torch.tensor([[0.0, -1 / 3, 1 / 3, -2 / 3]]))


def test_force_on_policy_ratio_is_one_with_on_policy_gradient() -> None:
    logprobs = policy(RATIO_LOGPROBS)
    loss, metrics = run(ClippedPGLossConfig(force_on_policy_ratio=True), logprobs, one_row_batch([1.0, -1.0, 2.0], -1.0))
    assert loss.item() == pytest.approx(-0.6667, abs=1e-4)
    for key in ("probs_ratio", "probs_ratio_min", "probs_ratio_max", "probs_ratio_clamped"):
        assert metrics[key] == pytest.approx(1.0)
    loss.backward()
    torch.testing.assert_close(logprobs.grad, torch.tensor([[0.0, -1 / 3, 1 / 3, -2 / 3]]))


def test_dual_clip_caps_negative_advantage_loss() -> None:
    logprobs = policy([-1.0 + math.log(0.5), -1.0, -3.0 + math.log(10.0)])  # ratios [0.5, 1, 10]
    config = ClippedPGLossConfig(ratio_clip_c=3.0)
    loss, metrics = run(config, logprobs, one_row_batch([1.0, -1.0, -4.0], [-1.0, -1.0, -3.0]))
    # per token [-0.5, 1, min(40, 12) = 12]
    assert loss.item() == pytest.approx((-0.5 + 1.0 + 12.0) / 3, abs=1e-4)
    assert loss.item() == pytest.approx(4.1667, abs=1e-4)
    assert metrics["clip_fraction"] == pytest.approx(1 / 3, abs=1e-6)
    loss.backward()
    assert logprobs.grad[0, 3].item() == 0.0  # dual-clipped: constant -c A
    assert logprobs.grad[0, 1].item() == pytest.approx(-0.5 / 3, abs=1e-5)


def test_kl_penalty_term() -> None:
    logprobs = policy([0.0, -1.0, -2.0])
    config = ClippedPGLossConfig(reference_policy_kl_penalty=0.1)
    batch = one_row_batch([0.0, 0.0, 0.0], [0.0, -1.0, -2.0], reference_logprobs=-1.0)
    loss, metrics = run(config, logprobs, batch)
    # k3 with logr = [-1, 0, 1]: [e^-1, 0, e - 2] -> mean 0.36206, times beta
    assert loss.item() == pytest.approx(0.0362, abs=1e-4)
    assert metrics["kl_penalty"] == pytest.approx((math.exp(-1) + math.e - 2) / 3, abs=1e-5)
    assert metrics["pg_loss"] == pytest.approx(0.0)


def test_kl_gradient_includes_sampling_term() -> None:
    logprobs = policy([0.0, -1.0, -2.0])
    beta = 0.1
    batch = one_row_batch([0.0, 0.0, 0.0], [0.0, -1.0, -2.0], reference_logprobs=-1.0)
    loss, _ = run(ClippedPGLossConfig(reference_policy_kl_penalty=beta), logprobs, batch)
    loss.backward()
    log_ratio = torch.tensor([-1.0, 0.0, 1.0])
    k3 = log_ratio.exp() - 1 - log_ratio
    # score-function term k3 plus pathwise term d k3 / d logpi = 1 - e^logr
    expected = beta * (k3 + 1 - log_ratio.exp()) / 3
    torch.testing.assert_close(logprobs.grad[0, 1:], expected, atol=1e-6, rtol=0)


def test_gspo_sequence_ratio() -> None:
    deltas = [0.1, 0.2, 0.3]  # log pi - log pi_old, mean 0.2
    logprobs = policy([-1.0 + d for d in deltas])
    config = ClippedPGLossConfig(sequence_level_importance_ratios=True, token_level_loss=False)
    seq_ratio = math.exp(0.2)  # 1.2214 > 1 + 0.2
    loss, metrics = run(config, logprobs, one_row_batch([-1.0] * 3, -1.0))
    assert loss.item() == pytest.approx(seq_ratio, abs=1e-5)  # A < 0: max(r, 1.2) = r, unclipped
    assert metrics["probs_ratio_min"] == pytest.approx(seq_ratio, abs=1e-5)
    assert metrics["probs_ratio_max"] == pytest.approx(seq_ratio, abs=1e-5)
    loss.backward()
    # every token moves the shared ratio: d r / d logpi_t = r / 3
    torch.testing.assert_close(logprobs.grad[0, 1:], torch.full((3,), seq_ratio / 3), atol=1e-5, rtol=0)

    logprobs = policy([-1.0 + d for d in deltas])
    loss, metrics = run(config, logprobs, one_row_batch([1.0] * 3, -1.0))
    assert loss.item() == pytest.approx(-1.2, abs=1e-5)  # A > 0: clipped at 1 + eps
    assert metrics["clip_fraction"] == pytest.approx(1.0)
    loss.backward()
    assert torch.count_nonzero(logprobs.grad) == 0


# prev - gen = log([0.5, 1, 3]): importance weights pi_old / pi_gen
IS_PREV = [-1.0, -1.0, -1.0]
IS_GEN = [-1.0 - math.log(0.5), -1.0, -1.0 - math.log(3.0)]


@pytest.mark.parametrize(
    ("truncation", "expected_weights"),
    [
        ({}, [0.5, 1.0, 3.0]),
        ({"truncated_importance_sampling_type": "tis", "truncated_importance_sampling_ratio_max": 2.0}, [0.5, 1.0, 2.0]),
        (
            {
                "truncated_importance_sampling_type": "icepop",
                "truncated_importance_sampling_ratio_min": 0.6,
                "truncated_importance_sampling_ratio_max": 2.0,
            },
            [0.0, 1.0, 0.0],
        ),
    ],
    ids=["plain", "tis", "icepop"],
)
def test_importance_sampling_correction(truncation: dict, expected_weights: list[float]) -> None:
    logprobs = policy(IS_PREV)
    config = ClippedPGLossConfig(use_importance_sampling_correction=True, **truncation)
    loss, metrics = run(config, logprobs, one_row_batch([1.0, 1.0, 1.0], IS_PREV, IS_GEN))
    # ratio 1, A = 1: per-token loss -w
    assert loss.item() == pytest.approx(-sum(expected_weights) / 3, abs=1e-5)
    assert metrics["is_weight"] == pytest.approx(sum(expected_weights) / 3, abs=1e-5)
    assert metrics["token_mult_prob_error"] == pytest.approx((2 + 1 + 3) / 3, abs=1e-5)  # exp|prev - gen|
    if truncation.get("truncated_importance_sampling_type") == "icepop":
        assert metrics["is_oob_ratio"] == pytest.approx(2 / 3, abs=1e-6)  # 0.5 and 3 outside [0.6, 2]
    elif truncation.get("truncated_importance_sampling_type") == "tis":
        assert metrics["is_oob_ratio"] == pytest.approx(1 / 3, abs=1e-6)  # 3 outside [0, 2], clamped
    else:
        assert "is_oob_ratio" not in metrics
    loss.backward()
    torch.testing.assert_close(logprobs.grad[0, 1:], -torch.tensor(expected_weights) / 3, atol=1e-5, rtol=0)


def test_without_correction_weights_are_only_reported() -> None:
    logprobs = policy(IS_PREV)
    loss, metrics = run(ClippedPGLossConfig(), logprobs, one_row_batch([1.0, 1.0, 1.0], IS_PREV, IS_GEN))
    assert loss.item() == pytest.approx(-1.0)
    assert metrics["is_weight"] == pytest.approx(4.5 / 3, abs=1e-5)
    assert metrics["is_weight_max"] == pytest.approx(3.0, abs=1e-5)


def test_cispo_weights_tokens_by_the_clipped_ratio_and_keeps_their_gradient() -> None:
    logprobs = policy(RATIO_LOGPROBS)  # ratios [0.5, 1, 1.5] against logpi_old = -1 -> weights [0.8, 1, 1.2]
    loss, metrics = run(ClippedPGLossConfig(use_cispo=True), logprobs, one_row_batch([1.0, -1.0, 2.0], -1.0))
    # per token -A w log pi: -(0.8)(-1.69315) = 1.35452, -(-1)(1)(-1) = -1, -(2)(1.2)(-0.59453) = 1.42687
    assert loss.item() == pytest.approx((1.35452 - 1.0 + 1.42687) / 3, abs=1e-4)
    assert loss.item() == pytest.approx(0.59380, abs=1e-4)
    assert metrics["clip_fraction"] == pytest.approx(2 / 3)  # weights of tokens 1 and 3 were clipped
    assert metrics["probs_ratio_clamped"] == pytest.approx(1.0, abs=1e-4)  # (0.8 + 1 + 1.2) / 3
    loss.backward()
    # d/d log pi = -A w / N: clipped tokens keep a gradient (PPO would give 0 for the third)
    torch.testing.assert_close(logprobs.grad, torch.tensor([[0.0, -0.8 / 3, 1 / 3, -2.4 / 3]]), atol=1e-5, rtol=0)


def test_seq_mask_tis_drops_whole_sequences_by_geometric_mean() -> None:
    # row 0: pi_old / pi_gen = [0.5, 1, 3], geometric mean 1.5^(1/3) = 1.1447 -> outside [0.9, 1.1], dropped
    # row 1: [1, 1, 1.2], geometric mean 1.2^(1/3) = 1.0627 -> kept with its raw (untruncated) token weights
    prev = torch.full((2, 4), -1.0)
    gen = prev - torch.log(torch.tensor([[1.0, 0.5, 1.0, 3.0], [1.0, 1.0, 1.0, 1.2]]))
    batch = {
        "token_mask": torch.tensor([TOKEN_MASK, TOKEN_MASK]),
        "sample_mask": torch.ones(2),
        "advantages": torch.ones(2, 4),
        "prev_logprobs": prev,
        "generation_logprobs": gen,
    }
    config = ClippedPGLossConfig(
        use_importance_sampling_correction=True,
        truncated_importance_sampling_type="seq-mask-tis",
        truncated_importance_sampling_ratio_min=0.9,
        truncated_importance_sampling_ratio_max=1.1,
    )
    logprobs = prev.clone().requires_grad_()
    loss, metrics = ClippedPGLoss(config)(logprobs, batch, torch.tensor(6.0), torch.tensor(2.0))
    assert loss.item() == pytest.approx(-3.2 / 6, abs=1e-5)  # ratio 1, A 1: -w over 6 tokens
    assert metrics["is_oob_ratio"] == pytest.approx(0.5)  # a share of sequences, not tokens
    assert metrics["is_weight"] == pytest.approx(3.2 / 6, abs=1e-5)
    loss.backward()
    expected = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, -1 / 6, -1 / 6, -1.2 / 6]])
    torch.testing.assert_close(logprobs.grad, expected, atol=1e-6, rtol=0)


def test_on_policy_kl_approximation_weights_kl_by_current_over_generator() -> None:
    beta = 0.1
    logprobs = policy([0.0, -1.0, -2.0])
    batch = one_row_batch([0.0, 0.0, 0.0], [0.0, -1.0, -2.0], [0.0, -1.0, -1.0], reference_logprobs=-1.0)
    config = ClippedPGLossConfig(reference_policy_kl_penalty=beta, use_on_policy_kl_approximation=True)
    loss, metrics = run(config, logprobs, batch)
    # logr = [-1, 0, 1]: k3 = [e^-1, 0, e - 2]; weights pi / pi_gen = [1, 1, e^-1]
    weighted = [math.exp(-1), 0.0, (math.e - 2) * math.exp(-1)]
    assert metrics["kl_penalty"] == pytest.approx(sum(weighted) / 3, abs=1e-6)
    assert loss.item() == pytest.approx(beta * 0.210707, abs=1e-6)
    loss.backward()
    # d(w k3)/d log pi = w (k3 + 1 - e^logr): [1, 0, -e^-1]
    expected = beta * torch.tensor([1.0, 0.0, -math.exp(-1)]) / 3
    torch.testing.assert_close(logprobs.grad[0, 1:], expected, atol=1e-6, rtol=0)

    # without the approximation the same tokens give the plain k3 mean (weights 1)
    loss, metrics = run(ClippedPGLossConfig(reference_policy_kl_penalty=beta), policy([0.0, -1.0, -2.0]), batch)
    assert metrics["kl_penalty"] == pytest.approx((math.exp(-1) + math.e - 2) / 3, abs=1e-6)

    del batch["generation_logprobs"]
    with pytest.raises(KeyError, match="use_on_policy_kl_approximation needs"):
        run(config, policy([0.0, -1.0, -2.0]), batch)


def test_reinforce_reports_no_ratio_metrics() -> None:
    _, metrics = run(ClippedPGLossConfig(disable_ppo_ratio=True), policy([-1.0] * 3), one_row_batch([1.0] * 3, -1.0))
    # NeMo-RL logs mean log pi under the name probs_ratio in this mode; reinforge logs no ratio at all
    assert not {key for key in metrics if key.startswith(("probs_ratio", "clip_fraction"))}
    assert metrics["loss"] == pytest.approx(1.0)  # -A log pi = -(1)(-1)


def test_num_valid_samples_counts_what_the_sequence_denominator_counts() -> None:
    batch = {
        "token_mask": torch.tensor([TOKEN_MASK, [0.0] * 4, TOKEN_MASK]),  # row 1 has no response tokens
        "sample_mask": torch.tensor([1.0, 1.0, 0.0]),
        "advantages": torch.ones(3, 4),
        "prev_logprobs": torch.full((3, 4), -1.0),
    }
    _, metrics = ClippedPGLoss()(torch.full((3, 4), -1.0), batch, torch.tensor(3.0), torch.tensor(2.0))
    assert metrics["num_valid_samples"] == 2.0  # sum of sample_mask, like global_valid_seqs


def test_sample_mask_drops_rows_and_all_masked_gives_zero() -> None:
    logprobs = torch.zeros(2, 4, requires_grad=True)
    batch = {
        "token_mask": torch.tensor([TOKEN_MASK, TOKEN_MASK]),
        "sample_mask": torch.tensor([0.0, 0.0]),
        "advantages": torch.ones(2, 4),
        "prev_logprobs": torch.zeros(2, 4),
    }
    loss, metrics = ClippedPGLoss(ClippedPGLossConfig())(logprobs, batch, torch.tensor(0.0), torch.tensor(0.0))
    assert loss.item() == 0.0 and not math.isnan(loss.item())
    assert metrics["probs_ratio_min"] == math.inf and metrics["probs_ratio_max"] == -math.inf
    assert metrics["num_valid_samples"] == 0.0


def random_batch(generator: torch.Generator, rows: int = 8, width: int = 7) -> dict:
    lengths = torch.randint(1, width, (rows,), generator=generator)
    token_mask = (torch.arange(width)[None, :] >= width - lengths[:, None]).float()
    token_mask[:, 0] = 0.0
    token_mask[3] = 0.0  # a row with no response tokens at all
    prev = -torch.rand(rows, width, generator=generator) * 3
    return {
        "token_mask": token_mask,
        "sample_mask": torch.tensor([1.0, 1.0, 0.0, 1.0, 1.0, 0.5, 1.0, 1.0])[:rows],
        "advantages": torch.randn(rows, 1, generator=generator).expand(rows, width).clone(),
        "prev_logprobs": prev,
        "generation_logprobs": prev + 0.3 * torch.randn(rows, width, generator=generator),
        "reference_logprobs": prev + 0.5 * torch.randn(rows, width, generator=generator),
    }


@pytest.mark.parametrize(
    "config",
    [
        ClippedPGLossConfig(reference_policy_kl_penalty=0.05, ratio_clip_c=3.0),
        ClippedPGLossConfig(
            use_importance_sampling_correction=True,
            truncated_importance_sampling_type="icepop",
            truncated_importance_sampling_ratio_min=0.5,
            truncated_importance_sampling_ratio_max=2.0,
        ),
        ClippedPGLossConfig(sequence_level_importance_ratios=True, token_level_loss=False, reference_policy_kl_penalty=0.1),
        ClippedPGLossConfig(disable_ppo_ratio=True),
        ClippedPGLossConfig(use_cispo=True, reference_policy_kl_penalty=0.05, use_on_policy_kl_approximation=True),
        ClippedPGLossConfig(
            use_importance_sampling_correction=True,
            truncated_importance_sampling_type="seq-mask-tis",
            truncated_importance_sampling_ratio_min=0.8,
            truncated_importance_sampling_ratio_max=1.25,
        ),
        ClippedPGLossConfig(
            use_importance_sampling_correction=True,
            truncated_importance_sampling_type="tis",
            truncated_importance_sampling_ratio_max=1.2,
        ),
        ClippedPGLossConfig(
            loss_reduction="seq_sum_constant", loss_reduction_constant=6.0, reference_policy_kl_penalty=0.05, ratio_clip_c=3.0
        ),
        ClippedPGLossConfig(
            sequence_level_importance_ratios=True, loss_reduction="seq_sum_constant", loss_reduction_constant=4.0,
            use_importance_sampling_correction=True, truncated_importance_sampling_type="tis",
            truncated_importance_sampling_ratio_max=1.2,
        ),
    ],
    ids=["token-kl-dualclip", "icepop", "gspo-kl", "reinforce", "cispo-onpolicy-kl", "seq-mask-tis", "tis",
         "seq-sum-constant-kl", "gspo-seq-sum-constant-tis"],
)
@pytest.mark.parametrize("chunks", [2, 4])
def test_microbatch_invariance(config: ClippedPGLossConfig, chunks: int) -> None:
    generator = torch.Generator().manual_seed(0)
    batch = random_batch(generator)
    logprobs = (batch["prev_logprobs"] + 0.2 * torch.randn(8, 7, generator=generator)).requires_grad_()
    mask = batch["token_mask"] * batch["sample_mask"][:, None]
    tokens, seqs = mask.sum(), batch["sample_mask"].sum()
    loss_fn = ClippedPGLoss(config)

    full_loss, full_metrics = loss_fn(logprobs, batch, tokens, seqs)
    (full_grad,) = torch.autograd.grad(full_loss, logprobs)

    total = torch.tensor(0.0)
    summed: dict[str, float] = {}
    for rows in torch.arange(8).chunk(chunks):
        part = {key: value[rows] for key, value in batch.items()}
        loss, metrics = loss_fn(logprobs[rows], part, tokens, seqs)
        total = total + loss
        for key, value in metrics.items():
            if key.endswith("_min"):
                summed[key] = min(summed.get(key, math.inf), value)
            elif key.endswith("_max"):
                summed[key] = max(summed.get(key, -math.inf), value)
            else:
                summed[key] = summed.get(key, 0.0) + value
    (split_grad,) = torch.autograd.grad(total, logprobs)

    assert total.item() == pytest.approx(full_loss.item(), abs=1e-5)
    torch.testing.assert_close(split_grad, full_grad, atol=1e-6, rtol=1e-5)
    assert summed.keys() == full_metrics.keys()
    for key, value in full_metrics.items():
        assert summed[key] == pytest.approx(value, abs=1e-5), key


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ratio_clip_min": 1.0}, "ratio_clip_min"),
        ({"ratio_clip_max": -0.1}, "ratio_clip_max"),
        ({"ratio_clip_c": 1.0}, "ratio_clip_c must be > 1"),
        ({"reference_policy_kl_penalty": -1.0}, "reference_policy_kl_penalty"),
        ({"reference_policy_kl_type": "k4"}, "reference_policy_kl_type"),
        ({"kl_output_clamp_value": 0.0}, "kl_output_clamp_value"),
        ({"disable_ppo_ratio": True, "force_on_policy_ratio": True}, "exclude each other"),
        ({"sequence_level_importance_ratios": True}, "token_level_loss=False"),
        ({"truncated_importance_sampling_type": "tis", "truncated_importance_sampling_ratio_max": 2.0}, "use_importance"),
        ({"use_importance_sampling_correction": True, "truncated_importance_sampling_type": "clip"}, "null, 'tis', 'icepop', 'seq-mask-tis'"),
        ({"use_importance_sampling_correction": True, "truncated_importance_sampling_type": "tis"}, "ratio_max is required"),
        (
            {
                "use_importance_sampling_correction": True,
                "truncated_importance_sampling_type": "icepop",
                "truncated_importance_sampling_ratio_min": 2.0,
                "truncated_importance_sampling_ratio_max": 1.0,
            },
            "must exceed",
        ),
        ({"disable_ppo_ratio": True, "ratio_clip_c": 3.0}, "no effect under disable_ppo_ratio"),
        ({"force_on_policy_ratio": True, "ratio_clip_c": 3.0}, "no effect under force_on_policy_ratio"),
        ({"use_cispo": True, "disable_ppo_ratio": True}, "use_cispo and disable_ppo_ratio exclude"),
        ({"use_cispo": True, "force_on_policy_ratio": True}, "use_cispo and force_on_policy_ratio exclude"),
        (
            {"use_cispo": True, "sequence_level_importance_ratios": True, "token_level_loss": False},
            "use_cispo and sequence_level_importance_ratios exclude",
        ),
        ({"use_cispo": True, "ratio_clip_c": 3.0}, "dual clipping"),
        ({"use_cispo": True, "token_level_loss": False}, "token_level_loss=true"),
        ({"use_on_policy_kl_approximation": True}, "reference_policy_kl_penalty is 0"),
        (
            {
                "use_importance_sampling_correction": True,
                "truncated_importance_sampling_type": "seq-mask-tis",
                "truncated_importance_sampling_ratio_max": 2.0,
                "sequence_level_importance_ratios": True,
                "token_level_loss": False,
            },
            "seq-mask-tis masks sequences",
        ),
    ],
)
def test_config_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClippedPGLossConfig(**kwargs)


def test_garbage_in_padded_columns_does_not_reach_loss_or_gradient() -> None:
    logprobs = torch.tensor([[0.0, -1.0, -1.0, -1.0, 50.0]], requires_grad=True)
    batch = {
        "token_mask": torch.tensor([[0.0, 1.0, 1.0, 1.0, 0.0]]),
        "sample_mask": torch.tensor([1.0]),
        "advantages": torch.ones(1, 5),
        "prev_logprobs": torch.tensor([[0.0, -1.0, -1.0, -1.0, -float("inf")]]),
    }
    loss, _ = ClippedPGLoss(ClippedPGLossConfig())(logprobs, batch, torch.tensor(3.0), torch.tensor(1.0))
    loss.backward()
    assert loss.item() == pytest.approx(-1.0)
    assert torch.isfinite(logprobs.grad).all()
    assert logprobs.grad[0, 4].item() == 0.0
