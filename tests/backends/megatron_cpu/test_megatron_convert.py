"""Hugging Face <-> Megatron-core weights: hand-worked layouts, bit-exact round trips, and through the live backend."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from megatron_cpu.helpers import build_tiny_llama, policy
from reinforge.backends.training.megatron.backend import MegatronBackend
from reinforge.backends.training.megatron.config import MegatronConfig
from reinforge.backends.training.megatron.convert import (
    ModelSpec,
    fuse_qkv,
    hf_to_megatron,
    megatron_to_hf,
    spec_from_hf_config,
    split_qkv,
    tp_shard,
    tp_unshard,
)
from reinforge.core.errors import ReinforgeError
from reinforge.testing.conformance_training import conformance_batch, naive_logprobs

CPU = MegatronConfig(device="cpu", logprob_chunk_size=5)


def _spec(heads: int, groups: int, head_dim: int) -> ModelSpec:
    return ModelSpec(
        model_type="qwen2", num_layers=1, hidden_size=heads * head_dim, num_attention_heads=heads,
        num_key_value_heads=groups, head_dim=head_dim, ffn_hidden_size=4, vocab_size=8, tie_word_embeddings=True,
        qkv_bias=True, norm_eps=1e-6, rope_theta=1e4, rope_scaling_factor=None, max_position_embeddings=16,
    )  # fmt: skip


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory) -> Path:
    from reinforge.models.tiny_model import build_model

    return build_model(tmp_path_factory.mktemp("qwen") / "model", size="tiny", seed=0)


@pytest.fixture(scope="module")
def llama_dir(qwen_dir, tmp_path_factory) -> Path:
    return build_tiny_llama(qwen_dir, tmp_path_factory.mktemp("llama") / "model")


def _hf_state(model_dir: Path) -> tuple[dict[str, torch.Tensor], ModelSpec]:
    from transformers import AutoConfig, AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return model.state_dict(), spec_from_hf_config(AutoConfig.from_pretrained(model_dir))


# --------------------------------------------------------------------------- hand-worked layouts
def test_fused_qkv_groups_query_heads_with_their_key_and_value():
    # 4 query heads, 2 key/value groups, head width 1: rows are q0 q1 k0 v0 | q2 q3 k1 v1.
    spec = _spec(heads=4, groups=2, head_dim=1)
    q, k, v = torch.tensor([10.0, 11, 12, 13]), torch.tensor([20.0, 21]), torch.tensor([30.0, 31])
    fused = fuse_qkv(q, k, v, spec)
    assert fused.tolist() == [10, 11, 20, 30, 12, 13, 21, 31]
    assert [t.tolist() for t in split_qkv(fused, spec)] == [q.tolist(), k.tolist(), v.tolist()]
    # Tensor parallel 2 splits at the group boundary: each rank gets whole groups.
    assert tp_shard("decoder.layers.0.self_attention.linear_qkv.bias", fused, 1, 2).tolist() == [12, 13, 21, 31]


def test_fc1_tensor_parallel_slices_take_gate_and_up_separately():
    gate, up = torch.tensor([[0.0], [1], [2], [3]]), torch.tensor([[10.0], [11], [12], [13]])
    fc1 = torch.cat([gate, up])  # [8, 1]: gate rows, then up rows
    name = "decoder.layers.3.mlp.linear_fc1.weight"
    pieces = [tp_shard(name, fc1, rank, 2) for rank in range(2)]
    assert pieces[0].flatten().tolist() == [0, 1, 10, 11] and pieces[1].flatten().tolist() == [2, 3, 12, 13]
    assert torch.equal(tp_unshard(name, pieces), fc1)


def test_row_parallel_and_replicated_tensors_split_as_megatron_does():
    proj = torch.arange(12.0).reshape(3, 4)
    name = "decoder.layers.0.self_attention.linear_proj.weight"
    assert tp_shard(name, proj, 1, 2).tolist() == [[2, 3], [6, 7], [10, 11]]
    norm = torch.arange(3.0)
    assert tp_shard("decoder.layers.0.input_layernorm.weight", norm, 1, 2) is norm


# --------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("family", ["qwen2", "llama"])
@pytest.mark.parametrize("tp", [1, 2])
def test_hf_to_megatron_to_hf_is_bit_exact(family, tp, qwen_dir, llama_dir):
    hf, spec = _hf_state(qwen_dir if family == "qwen2" else llama_dir)
    megatron = hf_to_megatron(hf, spec)
    # Through tensor-parallel pieces too: shard every tensor, join the pieces, convert back.
    joined = {name: tp_unshard(name, [tp_shard(name, t, r, tp) for r in range(tp)]) for name, t in megatron.items()}
    back = megatron_to_hf(joined, spec)
    expected = {k: v for k, v in hf.items() if not (spec.tie_word_embeddings and k == "lm_head.weight")}
    assert back.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(back[name], tensor), name
    assert ("output_layer.weight" in megatron) is (family == "llama")
    assert ("decoder.layers.0.self_attention.linear_qkv.bias" in megatron) is (family == "qwen2")


def test_llama3_rope_scaling_and_untied_head_are_read(llama_dir):
    _, spec = _hf_state(llama_dir)
    assert (spec.model_type, spec.tie_word_embeddings, spec.qkv_bias) == ("llama", False, False)
    assert (spec.rope_theta, spec.rope_scaling_factor) == (500000.0, 8.0)


@pytest.mark.parametrize("family", ["qwen2", "llama"])
def test_the_live_model_gives_back_the_hf_weights_and_logprobs(family, qwen_dir, llama_dir):
    from transformers import AutoModelForCausalLM

    model_dir = qwen_dir if family == "qwen2" else llama_dir
    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    backend = MegatronBackend(policy(model_dir), CPU)
    try:
        got = {name: t for bucket in backend.named_weights(2**16) for name, t in bucket}
        expected = hf.state_dict()
        if hf.config.tie_word_embeddings:
            expected.pop("lm_head.weight")
        assert got.keys() == expected.keys()
        for name, tensor in expected.items():
            assert torch.equal(got[name], tensor), name
        batch = conformance_batch(hf.config.vocab_size)
        for temperature in (1.0, 0.7):
            torch.testing.assert_close(
                backend.logprobs(batch, temperature=temperature), naive_logprobs(hf, batch, temperature), atol=1e-5, rtol=0
            )
    finally:
        backend.shutdown()


# --------------------------------------------------------------------------- what is refused, and how
def test_an_unsupported_architecture_is_a_user_error(tmp_path):
    from transformers import GPT2Config

    GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=64).save_pretrained(tmp_path)
    with pytest.raises(ReinforgeError, match=r"converts qwen2, llama models, not 'gpt2'.*policy.backend=dtensor"):
        MegatronBackend(policy(tmp_path), CPU)


def test_a_tensor_parallel_size_that_does_not_divide_the_heads_is_refused(qwen_dir):
    with pytest.raises(ReinforgeError, match=r"tensor_parallel_size=3 does not divide the model's attention heads \(4\)"):
        MegatronBackend(policy(qwen_dir), MegatronConfig(device="cpu", tensor_parallel_size=3))


def test_a_pipeline_parallel_size_that_does_not_divide_the_layers_is_refused(qwen_dir):
    # Checked before any process group: the message names the layer count, not the world size.
    with pytest.raises(ReinforgeError, match="pipeline_parallel_size=3 does not divide the model's 2 decoder layers"):
        MegatronBackend(policy(qwen_dir), MegatronConfig(device="cpu", pipeline_parallel_size=3))


def test_pipeline_parallel_larger_than_the_world_is_refused(qwen_dir):
    with pytest.raises(ReinforgeError, match=r"pipeline_parallel_size=2 x context_parallel_size=1 = 2 does not divide the world size 1"):
        MegatronBackend(policy(qwen_dir), MegatronConfig(device="cpu", pipeline_parallel_size=2))


def test_tensor_parallel_larger_than_the_world_is_refused(qwen_dir):
    with pytest.raises(ReinforgeError, match=r"= 2 does not divide the world size 1; launch with torchrun"):
        MegatronBackend(policy(qwen_dir), MegatronConfig(device="cpu", tensor_parallel_size=2))


def test_l2_coupled_adam_is_refused_with_the_alternative(qwen_dir):
    from reinforge.core.run_config import OptimizerConfig

    with pytest.raises(ReinforgeError, match="use name: adamw"):
        MegatronBackend(policy(qwen_dir, optimizer=OptimizerConfig(name="adam", weight_decay=0.01)), CPU)


def test_checkpoint_to_hf_writes_the_trained_weights(qwen_dir, tmp_path):
    from reinforge.testing.conformance_training import ConformanceNLLLoss, weights

    backend = MegatronBackend(policy(qwen_dir), CPU)
    try:
        batch = conformance_batch(704)
        backend.train(batch, ConformanceNLLLoss())
        backend.save(str(tmp_path / "ckpt"))
        trained = weights(backend)
        expected_logprobs = backend.logprobs(batch)
    finally:
        backend.shutdown()
    out = MegatronBackend.checkpoint_to_hf(str(tmp_path / "ckpt"), str(qwen_dir), str(tmp_path / "hf"))
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    for name, tensor in trained.items():
        assert torch.equal(hf.state_dict()[name], tensor), name
    torch.testing.assert_close(naive_logprobs(hf, batch), expected_logprobs, atol=1e-5, rtol=0)
