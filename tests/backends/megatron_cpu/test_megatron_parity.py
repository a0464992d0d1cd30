"""`megatron` against `dtensor` on the same weights and tokens: logprobs, one GRPO step, DPO and SFT steps.

Both backends load the kit's tiny Qwen2 in float32. Differences come only from summation order
(fused QKV, vocabulary-parallel log-softmax), so logprobs agree to 1e-5 and one optimizer step
leaves the two models within float32 noise of each other.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from megatron_cpu.helpers import policy
from reinforge.algorithms.losses import NLLLoss
from reinforge.algorithms.losses_pg import ClippedPGLoss, ClippedPGLossConfig
from reinforge.algorithms.losses_preference import DPOLoss, DPOLossConfig
from reinforge.backends.training.dtensor.backend import DTensorBackend
from reinforge.backends.training.dtensor.config import DTensorConfig
from reinforge.backends.training.megatron.backend import MegatronBackend
from reinforge.backends.training.megatron.config import MegatronConfig
from reinforge.core.run_config import OptimizerConfig, SchedulerConfig
from reinforge.testing.conformance_training import conformance_batch, weights

pytestmark = pytest.mark.usefixtures("one_torch_thread")

VOCAB = 704


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    from reinforge.models.tiny_model import build_model

    return build_model(tmp_path_factory.mktemp("parity") / "model", size="tiny", seed=0)


@pytest.fixture
def pair(model_dir):
    """`make(**policy_fields)` -> (dtensor, megatron) on the same model and settings; both shut down after the test."""
    made = []

    def make(need_reference: bool = False, **fields):
        settings = policy(model_dir, **fields)
        backends = (
            DTensorBackend(settings, DTensorConfig(logprob_chunk_size=7), need_reference=need_reference),
            MegatronBackend(settings, MegatronConfig(device="cpu", logprob_chunk_size=5), need_reference=need_reference),
        )
        made.extend(backends)
        return backends

    yield make
    for backend in made:
        backend.shutdown()


def _close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_logprobs_equal_dtensor_on_the_same_weights(pair, temperature):
    dtensor, megatron = pair()
    for seed in range(3):
        batch = conformance_batch(VOCAB, rows=6, width=30, seed=seed)
        ours, theirs = megatron.logprobs(batch, temperature), dtensor.logprobs(batch, temperature)
        assert ours.shape == theirs.shape
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def _grpo_batch(dtensor: DTensorBackend, seed: int = 0):
    """A GRPO training batch: advantages per row, prev logprobs from the policy, reference logprobs."""
    batch = conformance_batch(VOCAB, rows=8, width=24, seed=seed)
    generator = torch.Generator().manual_seed(seed + 100)
    batch["advantages"] = torch.randn(8, generator=generator)
    current = dtensor.logprobs(batch)
    batch["prev_logprobs"] = current + 0.05 * torch.randn(current.shape, generator=generator)  # off-policy: the clip acts
    batch["generation_logprobs"] = batch["prev_logprobs"].clone()
    batch["reference_logprobs"] = dtensor.reference_logprobs(batch)
    return batch


def test_one_grpo_step_gives_the_same_loss_and_the_same_logprobs_after_it(pair):
    fields = {
        # eps 1e-6, not Adam's 1e-8: the first step moves a weight by lr * g / (|g| + eps), so a gradient that is
        # ~1e-10 on both sides (cancellation noise, its sign set by summation order) moved the weights apart by up
        # to 2 * lr * |g| / (|g| + 1e-8), 1.5e-5 on one AVX-512 machine. With 1e-6 they agree to 1.1e-6 there,
        # and every gradient above ~1e-5 still takes the ~lr-sized step that makes the comparison mean something.
        "optimizer": OptimizerConfig(name="adamw", lr=1e-3, weight_decay=0.01, eps=1e-6),
        "scheduler": SchedulerConfig(name="linear_warmup", warmup_steps=4, warmup_start_factor=0.5),
        "max_grad_norm": 0.5,  # small enough that clipping acts
    }
    dtensor, megatron = pair(need_reference=True, **fields)
    batch = _grpo_batch(dtensor)
    torch.testing.assert_close(megatron.reference_logprobs(batch), batch["reference_logprobs"], atol=1e-5, rtol=0)
    loss = ClippedPGLoss(ClippedPGLossConfig(ratio_clip_min=0.2, ratio_clip_max=0.28, reference_policy_kl_penalty=0.01))
    ours, theirs = megatron.train(batch, loss), dtensor.train(batch, loss)
    assert ours["loss"] == pytest.approx(theirs["loss"], abs=1e-6)
    assert ours["grad_norm"] == pytest.approx(theirs["grad_norm"], rel=1e-5)
    assert theirs["grad_norm"] > 0.5  # the clipping path ran on both
    assert ours["lr"] == pytest.approx(theirs["lr"]) == pytest.approx(5e-4)
    assert ours["tokens"] == theirs["tokens"] and ours["microbatches"] == theirs["microbatches"] == 4
    shared = sorted(theirs.keys() & ours.keys())
    for key in shared:
        assert ours[key] == pytest.approx(theirs[key], rel=1e-4, abs=1e-6), key
    after = conformance_batch(VOCAB, rows=6, width=30, seed=7)
    moved = (dtensor.logprobs(after) - dtensor.reference_logprobs(after)).abs().max().item()
    assert moved > 1e-3  # the step changed the policy, so the comparison below means something
    torch.testing.assert_close(megatron.logprobs(after), dtensor.logprobs(after), atol=2e-5, rtol=0)
    assert _close(weights(megatron), weights(dtensor)) < 1e-5


def test_one_sft_step_matches_dtensor(pair):
    # SGD with lr 1: the weight change is the (clipped) gradient, so weights agree as closely as gradients do.
    # (Adam's first step is ~lr * sign(g): gradients that are ~0 on both sides may round to opposite signs.)
    dtensor, megatron = pair(optimizer=OptimizerConfig(name="sgd", lr=1.0, weight_decay=0.0), max_grad_norm=1.0)
    batch = conformance_batch(VOCAB, rows=8, width=24, seed=3)
    ours, theirs = megatron.train(batch, NLLLoss()), dtensor.train(batch, NLLLoss())
    assert ours["loss"] == pytest.approx(theirs["loss"], abs=1e-6)
    assert ours["num_unmasked_tokens"] == theirs["num_unmasked_tokens"]
    assert _close(weights(megatron), weights(dtensor)) < 1e-5


def test_one_dpo_step_matches_dtensor(pair):
    dtensor, megatron = pair(need_reference=True, optimizer=OptimizerConfig(name="sgd", lr=0.5, weight_decay=0.0))
    batch = conformance_batch(VOCAB, rows=8, width=24, seed=5)  # rows 2p / 2p+1: chosen / rejected
    batch["sample_mask"] = torch.ones(8)
    batch["reference_logprobs"] = megatron.reference_logprobs(batch)
    loss = DPOLoss(DPOLossConfig(reference_policy_kl_penalty=0.1))
    ours, theirs = megatron.train(batch, loss), dtensor.train(batch, loss)
    assert ours["loss"] == pytest.approx(theirs["loss"], abs=1e-6)
    assert ours["loss"] == pytest.approx(0.6931472, abs=1e-6)  # policy == reference: -log sigmoid(0) = ln 2
    assert _close(weights(megatron), weights(dtensor)) < 1e-5
