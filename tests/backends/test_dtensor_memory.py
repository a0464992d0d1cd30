"""The dtensor backend's peak-memory estimate: hand-worked terms, the parameter count of a real model,
the measured peak of a real step (torch's memory tracker, CPU), and the chunked logprob bound."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
import torch

from reinforge.backends.training.dtensor.backend import DTensorBackend
from reinforge.backends.training.dtensor.config import DTensorConfig
from reinforge.backends.training.dtensor.memory import ModelShape, estimate_training_memory
from reinforge.core.run_config import OptimizerConfig, PolicyConfig
from reinforge.testing.conformance_training import ConformanceNLLLoss, conformance_batch

SHAPE = ModelShape(num_parameters=1000, largest_parameter=300, hidden_size=8, num_layers=2, num_heads=2, head_dim=4,
                   intermediate_size=16, vocab_size=32)


def _policy(**overrides) -> PolicyConfig:
    settings = {"model_name": "unused", "train_global_batch_size": 4, "train_micro_batch_size": 2,
                "logprob_batch_size": 3, "max_total_sequence_length": 10, "optimizer": OptimizerConfig(name="adamw")}
    return PolicyConfig(**{**settings, **overrides})


def test_estimate_hand_worked_float32_adamw() -> None:
    estimate = estimate_training_memory(SHAPE, _policy(), DTensorConfig(logprob_chunk_size=4))
    # 1000 parameters x 4 bytes; AdamW keeps two such tensors; its step two temporaries of the largest (300)
    assert (estimate.weights, estimate.gradients, estimate.optimizer_state, estimate.optimizer_step) == (4000, 4000, 8000, 2400)
    # per token and layer: norms 2 x (2*8 + 1) x 4 = 136; projection inputs 2 x 8 x 4 = 64;
    # attention 5 x (2 heads x 4) x 4 + 2 x 4 (lse) = 168; MLP 4 x 16 x 4 = 256  -> 624
    # 2 rows x 10 tokens x 2 layers x 624 = 24960, + the final norm and head input (17 x 4 + 8 x 4 = 100) x 20 = 2000
    assert estimate.activations == 26960
    # one chunk: 2 rows x min(4, 9) positions x 32 vocab x 4 bytes, and its blocked temporary (the whole chunk
    # here, under 8 MB)
    assert estimate.logits == 2 * 2 * 4 * 32 * 4 == 2048
    # logprob pass: a chunk of 3 rows x 4 positions x 32 x 4 and its temporary = 3072, + 3 x 10 x (3 x 8 + 2 x 16) x 4 = 6720
    assert estimate.logprob_pass == 9792
    assert estimate.reference == 0
    assert estimate.training_peak == 16000 + 26960 + 2048 == 45008
    assert estimate.logprob_peak == 4000 + 8000 + 9792 == 21792
    assert estimate.total == 45008
    assert estimate.as_dict()["total"] == 45008


def test_estimate_hand_worked_variants() -> None:
    chunk4 = DTensorConfig(logprob_chunk_size=4)
    bf16 = estimate_training_memory(SHAPE, _policy(precision="bfloat16"), chunk4)
    # 2 bytes; norms stay float32 (136), projections 32, attention 5 x 8 x 2 + 8 = 88, MLP 128 -> 384 per token-layer
    assert (bf16.weights, bf16.optimizer_state, bf16.optimizer_step) == (2000, 4000, 1200)
    assert bf16.activations == 20 * 2 * 384 + 20 * (17 * 4 + 8 * 2) == 17040
    assert bf16.logits == 2048 + 2 * 4 * 32 * 2  # plus the head's bfloat16 output
    checkpointed = estimate_training_memory(SHAPE, _policy(), attrs.evolve(chunk4, activation_checkpointing=True))
    assert checkpointed.activations == 20 * (2 * 8 * 4 + 624) + 2000 == 15760  # layer inputs + one layer recomputed
    budget = estimate_training_memory(
        SHAPE, _policy(), attrs.evolve(chunk4, microbatching="token_budget", max_tokens_per_microbatch=30)
    )
    assert budget.activations == 30 * 2 * 624 + 30 * 100 and budget.logits == 2 * 3 * 4 * 32 * 4  # 3 rows of 10
    packed = estimate_training_memory(
        SHAPE, _policy(), attrs.evolve(chunk4, sequence_packing=True, max_tokens_per_microbatch=30)
    )
    assert packed.logits == 2 * 1 * 4 * 32 * 4  # one packed row: a chunk is 4 positions
    sgd = estimate_training_memory(SHAPE, _policy(optimizer=OptimizerConfig(name="sgd")), chunk4)
    assert (sgd.optimizer_state, sgd.optimizer_step) == (0, 0)
    sharded = estimate_training_memory(SHAPE, _policy(), chunk4, shards=2, need_reference=True)
    assert (sharded.weights, sharded.gradients, sharded.optimizer_state, sharded.reference) == (2000, 2000, 4000, 2000)
    foreach = estimate_training_memory(SHAPE, _policy(), chunk4, foreach_optimizer=True)
    assert foreach.optimizer_step == 4000
    fused = estimate_training_memory(SHAPE, _policy(), chunk4, foreach_optimizer=True, fused_optimizer=True)
    assert fused.optimizer_step == 0  # the fused kernel updates in place
    longest = estimate_training_memory(SHAPE, _policy(), chunk4, sequence_length=5)
    assert longest.activations == 2 * 5 * (2 * 624 + 100)


def test_estimate_hand_worked_lora() -> None:
    from reinforge.core.lora_config import LoRAConfig

    # 1000 parameters of which 60 adapters (largest 20): weights count all, gradients and moments the adapters only
    shape = attrs.evolve(SHAPE, num_parameters=1060, trainable_parameters=60, largest_trainable=20)
    lora = _policy(lora=LoRAConfig(enabled=True))
    estimate = estimate_training_memory(shape, lora, DTensorConfig(logprob_chunk_size=4), need_reference=True)
    assert (estimate.weights, estimate.gradients, estimate.optimizer_state) == (4240, 240, 480)
    assert estimate.optimizer_step == 2 * 20 * 4  # AdamW's per-tensor temporaries of the largest adapter
    assert estimate.reference == 0  # the reference is the base with adapters off, not a copy
    assert estimate.training_peak == 4240 + 240 + 480 + 26960 + 2048
    full = estimate_training_memory(SHAPE, _policy(), DTensorConfig(logprob_chunk_size=4), need_reference=True)
    assert full.training_peak - estimate.training_peak == (4000 + 4000 + 8000 + 4000) - (4240 + 240 + 480)


def test_model_shape_counts_the_real_parameters(tiny_model_dir, tiny_model) -> None:
    from transformers import AutoConfig

    shape = ModelShape.from_config(AutoConfig.from_pretrained(tiny_model_dir))
    unique = {id(p): p for p in tiny_model.parameters()}  # tied embeddings counted once
    assert shape.num_parameters == sum(p.numel() for p in unique.values())
    assert shape.largest_parameter == tiny_model.model.embed_tokens.weight.numel()
    assert shape == ModelShape.from_model(tiny_model)
    assert (shape.hidden_size, shape.num_layers, shape.intermediate_size) == (128, 2, 256)


# ------------------------------------------------------------------ measured on a vocabulary-heavy tiny model
VOCAB, ROWS, WIDTH = 16384, 8, 96


@pytest.fixture(scope="module")
def vocab_heavy_dir(tmp_path_factory) -> Path:
    """A 2-layer Qwen2 whose output layer dominates (vocabulary 16384, hidden 64): logits are the big tensor."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=VOCAB, hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                         max_position_embeddings=256)
    folder = tmp_path_factory.mktemp("vocab-heavy")
    Qwen2ForCausalLM(config).save_pretrained(folder)
    return folder


def _backend(model_dir: Path, chunk: int) -> tuple[DTensorBackend, PolicyConfig, DTensorConfig]:
    policy = PolicyConfig(model_name=str(model_dir), train_global_batch_size=ROWS, train_micro_batch_size=ROWS,
                          logprob_batch_size=ROWS, max_total_sequence_length=WIDTH, max_grad_norm=None,
                          optimizer=OptimizerConfig(name="adamw", lr=1e-3))
    options = DTensorConfig(logprob_chunk_size=chunk)
    return DTensorBackend(policy, options), policy, options


def _full_rows():
    batch = conformance_batch(VOCAB, rows=ROWS, width=WIDTH)
    batch["input_lengths"] = torch.full((ROWS,), WIDTH)  # every row full length: the estimate's worst case
    return batch


def _tracked_peak(backend: DTensorBackend, call) -> int:
    """Peak bytes of the tensors alive during `call` (parameters, gradients, optimizer state, activations, temporaries)."""
    from torch.distributed._tools.mem_tracker import MemTracker

    tracker = MemTracker()
    tracker.track_external(backend.module, backend.optimizer)
    with tracker:
        call()
    return tracker.get_tracker_snapshot("peak")[torch.device("cpu")]["Total"]


def test_estimate_matches_the_measured_peak_of_a_step(vocab_heavy_dir) -> None:
    backend, policy, options = _backend(vocab_heavy_dir, chunk=16)
    batch = _full_rows()
    first = backend.train(batch, ConformanceNLLLoss())  # creates the optimizer state (the steady state)
    estimate = estimate_training_memory(ModelShape.from_model(backend.model), policy, options)
    assert first["memory_estimate_bytes"] == float(backend.memory_estimate.total) == float(estimate.total)
    assert first["memory_peak_rss_bytes"] >= estimate.weights  # the process holds at least the weights
    training = _tracked_peak(backend, lambda: backend.train(batch, ConformanceNLLLoss()))
    scoring = _tracked_peak(backend, lambda: backend.logprobs(batch))
    # measured here 1.00 and 0.94 of the estimate (0.81 and 0.97 with one chunk of 96); the target is within 1.3x
    assert 0.75 * estimate.training_peak <= training <= 1.3 * estimate.training_peak
    assert 0.75 * estimate.logprob_peak <= scoring <= 1.3 * estimate.logprob_peak
    assert "memory_estimate_bytes" not in backend.train(batch, ConformanceNLLLoss())  # reported once


def test_logprob_pass_never_holds_the_whole_batchs_logits(vocab_heavy_dir, monkeypatch) -> None:
    full_logits = ROWS * (WIDTH - 1) * VOCAB * 4  # B x T x V float32: 50 MB here
    chunked, _, _ = _backend(vocab_heavy_dir, chunk=16)
    resident = sum(p.numel() * p.element_size() for p in chunked.module.parameters())
    widest: list[int] = []
    head = chunked.module.causal_lm.lm_head
    original = head.forward
    monkeypatch.setattr(head, "forward", lambda hidden: widest.append(hidden.shape[:-1].numel()) or original(hidden))
    batch = _full_rows()
    peak = _tracked_peak(chunked, lambda: chunked.logprobs(batch)) - resident
    assert max(widest) == ROWS * 16 and len(widest) == 6  # 95 positions in chunks of 16
    assert peak < full_logits / 2  # two chunk-sized float32 tensors, not B x T x V
    # the same measurement sees the whole batch's logits when the chunk covers every position
    monkeypatch.undo()
    unchunked, _, _ = _backend(vocab_heavy_dir, chunk=512)
    resident = sum(p.numel() * p.element_size() for p in unchunked.module.parameters())
    assert _tracked_peak(unchunked, lambda: unchunked.logprobs(batch)) - resident >= full_logits
