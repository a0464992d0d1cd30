"""LoRA on the `dtensor` backend: the layer's numerics by hand, which layers it adapts, and the backend with
adapters (the base is the start and the reference, only adapters train, merged refit and export,
adapter-only checkpoints and their conversion)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from reinforge.backends.generation.engine_common import check_weights
from reinforge.backends.training.dtensor.backend import DTensorBackend
from reinforge.backends.training.dtensor.checkpointing import dcp_to_hf
from reinforge.backends.training.dtensor.config import DTensorConfig
from reinforge.backends.training.dtensor.lora import (
    LoRALinear,
    add_adapter,
    adapter_layers,
    merge_state_dict,
    merged_weight,
    select_targets,
)
from reinforge.backends.training.safe_dcp import SafeFileSystemReader
from reinforge.core.errors import ReinforgeError
from reinforge.core.lora_config import LoRAConfig
from reinforge.core.run_config import OptimizerConfig, PolicyConfig, SchedulerConfig
from reinforge.testing.conformance_training import ConformanceNLLLoss, conformance_batch, naive_logprobs, weights

LORA = LoRAConfig(enabled=True, dim=4, alpha=8.0)
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _policy(model_dir, lora: LoRAConfig | None = LORA, **fields) -> PolicyConfig:
    settings = {
        "model_name": str(model_dir),
        "train_global_batch_size": 8,
        "train_micro_batch_size": 2,
        "logprob_batch_size": 4,
        "max_total_sequence_length": 64,
        "max_grad_norm": None,
        "optimizer": OptimizerConfig(name="adamw", lr=1e-2, weight_decay=0.0),
        "lora": lora or LoRAConfig(),
    }
    settings.update(fields)
    return PolicyConfig(**settings)


def _backend(model_dir, lora: LoRAConfig | None = LORA, *, need_reference: bool = False, options=None, **fields):
    return DTensorBackend(_policy(model_dir, lora, **fields), options or DTensorConfig(logprob_chunk_size=7), need_reference=need_reference)


def _vocab(backend: DTensorBackend) -> int:
    return backend.model.config.vocab_size


def _base_state(model_dir) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).state_dict()


# --------------------------------------------------------------------------- the layer, by hand
def _linear(out_features: int, in_features: int, dtype=torch.float64, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(in_features, out_features, dtype=dtype)


def test_merged_weight_by_hand():
    weight = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # [out 2, in 2]
    lora_A = torch.tensor([[1.0, 0.0]])  # [r 1, in 2]
    lora_B = torch.tensor([[1.0], [2.0]])  # [out 2, r 1]
    # B A = [[1, 0], [2, 0]]; scale alpha / dim = 2 / 1
    assert merged_weight(weight, lora_A, lora_B, 2.0).tolist() == [[3.0, 2.0], [7.0, 4.0]]


def test_zero_b_gives_the_base_output_bitwise():
    linear = _linear(6, 5, dtype=torch.float32)
    x = torch.randn(3, 4, 5)
    base = linear(x)
    adapted = add_adapter(linear, LoRAConfig(enabled=True, dim=2, alpha=16.0))
    assert isinstance(adapted, nn.Linear) and adapted is linear  # the same module, still an nn.Linear
    assert [n for n, _ in adapted.named_parameters()] == ["weight", "bias", "lora_A", "lora_B"]
    assert adapted.lora_A.shape == (2, 5) and adapted.lora_B.shape == (6, 2) and not adapted.lora_B.any()
    assert torch.equal(adapted(x), base)


def test_unmerged_forward_equals_the_merged_weight_in_float64():
    linear = add_adapter(_linear(6, 5), LoRAConfig(enabled=True, dim=3, alpha=6.0))
    with torch.no_grad():
        linear.lora_B.copy_(torch.randn(6, 3, dtype=torch.float64))
    x = torch.randn(4, 5, dtype=torch.float64)
    # x W^T + b + (alpha/dim) x A^T B^T, written out
    expected = x @ linear.weight.T + linear.bias + 2.0 * (x @ linear.lora_A.T @ linear.lora_B.T)
    torch.testing.assert_close(linear(x), expected, atol=1e-12, rtol=0)
    merged = merged_weight(linear.weight, linear.lora_A, linear.lora_B, linear.scale)  # computed in float32
    reference = linear.weight + 2.0 * linear.lora_B @ linear.lora_A  # float64
    torch.testing.assert_close(merged, reference, atol=1e-6, rtol=0)
    torch.testing.assert_close(nn.functional.linear(x, reference, linear.bias), linear(x), atol=1e-12, rtol=0)


def test_dropout_positions_and_eval_mode():
    x = torch.ones(2000, 4, dtype=torch.float64)
    for position in ("pre", "post"):
        linear = add_adapter(_linear(3, 4), LoRAConfig(enabled=True, dim=2, alpha=2.0, dropout=0.5, dropout_position=position))
        with torch.no_grad():
            linear.lora_B.fill_(1.0)
        clean = linear.eval()(x)
        noisy = linear.train()(x)
        assert not torch.equal(noisy, clean)  # some adapter inputs or outputs were dropped
        torch.testing.assert_close(linear.eval()(x), clean, atol=0, rtol=0)  # eval: no dropout


def test_a_init_methods():
    xavier = add_adapter(_linear(64, 32), LoRAConfig(enabled=True, dim=16, lora_A_init="xavier")).lora_A
    uniform = add_adapter(_linear(64, 32), LoRAConfig(enabled=True, dim=16, lora_A_init="uniform")).lora_A
    # Glorot normal: std sqrt(2 / (fan_in + fan_out)) = sqrt(2 / 48); Kaiming uniform (a = sqrt 5): bound 1 / sqrt(32)
    assert xavier.std().item() == pytest.approx((2 / 48) ** 0.5, rel=0.1)
    assert uniform.abs().max().item() <= 32 ** -0.5 and uniform.abs().max().item() > 0.9 * 32 ** -0.5


def test_merge_state_dict_drops_the_adapters():
    state = {"a.weight": torch.eye(2), "a.bias": torch.ones(2), "a.lora_A": torch.ones(1, 2), "a.lora_B": torch.ones(2, 1)}
    merged = merge_state_dict(state, 0.5)
    assert list(merged) == ["a.weight", "a.bias"]
    assert merged["a.weight"].tolist() == [[1.5, 0.5], [0.5, 1.5]]


# --------------------------------------------------------------------------- which layers
def _tiny(model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)


def test_match_all_linear_adapts_every_decoder_linear_but_not_the_output_layer(tiny_model_dir):
    chosen = select_targets(_tiny(tiny_model_dir), LoRAConfig(enabled=True))
    expected = [f"model.layers.{i}.{block}.{p}" for i in range(2) for block, names in (("self_attn", ATTENTION), ("mlp", MLP)) for p in names]
    assert sorted(chosen) == sorted(expected)


def test_target_and_exclude_forms(tiny_model_dir):
    model = _tiny(tiny_model_dir)
    only_qv = LoRAConfig(enabled=True, match_all_linear=False, target_modules=("q_proj", "v_proj"))
    assert select_targets(model, only_qv) == [f"model.layers.{i}.self_attn.{p}" for i in range(2) for p in ("q_proj", "v_proj")]
    glob = LoRAConfig(enabled=True, match_all_linear=False, target_modules=("*.layers.0.*",), exclude_modules=("mlp.down_proj",))
    assert select_targets(model, glob) == [f"model.layers.0.self_attn.{p}" for p in ATTENTION] + [
        "model.layers.0.mlp.gate_proj", "model.layers.0.mlp.up_proj"
    ]
    no_mlp = LoRAConfig(enabled=True, exclude_modules=("*.mlp.*",))
    assert len(select_targets(model, no_mlp)) == 8


def test_names_that_match_nothing_are_refused_with_the_models_layers(tiny_model_dir):
    model = _tiny(tiny_model_dir)
    typo = LoRAConfig(enabled=True, match_all_linear=False, target_modules=("q_proj", "qproj"))
    with pytest.raises(ReinforgeError, match=r"policy.lora.target_modules: 'qproj' matches no linear layer") as caught:
        select_targets(model, typo)
    assert "model.layers.*.self_attn.q_proj" in str(caught.value) and "lm_head" in str(caught.value)
    with pytest.raises(ReinforgeError, match=r"policy.lora.exclude_modules: 'attn' matches no linear layer"):
        select_targets(model, LoRAConfig(enabled=True, exclude_modules=("attn",)))
    with pytest.raises(ReinforgeError, match="leaves no linear layer"):
        select_targets(model, LoRAConfig(enabled=True, exclude_modules=("*proj",)))
    with pytest.raises(ReinforgeError, match="tied to the input embeddings"):
        select_targets(model, LoRAConfig(enabled=True, match_all_linear=False, target_modules=("lm_head",)))


def test_a_bad_target_is_refused_when_the_backend_starts(tiny_model_dir):
    typo = LoRAConfig(enabled=True, match_all_linear=False, target_modules=("qkv_proj",))
    with pytest.raises(ReinforgeError, match="'qkv_proj' matches no linear layer"):
        _backend(tiny_model_dir, typo)


# --------------------------------------------------------------------------- the backend
def test_the_start_is_the_base_and_the_reference_is_the_base_without_a_copy(tiny_model_dir):
    lora = _backend(tiny_model_dir, need_reference=True)
    assert lora._reference is None and lora.memory_estimate.reference == 0
    full = _backend(tiny_model_dir, None, need_reference=True)
    assert full.memory_estimate.reference > 0
    batch = conformance_batch(_vocab(lora))
    start = lora.reference_logprobs(batch)
    assert torch.equal(lora.logprobs(batch), start)  # B = 0: the adapters add an exact zero
    # The plain model (no adapter anywhere) agrees to float32 round-off: BLAS kernels may round differently
    # for differently aligned copies of the same weights (measured 5e-7 on the tiny model's lm_head).
    base = full.logprobs(batch)
    torch.testing.assert_close(start, base, atol=1e-6, rtol=0)
    for _ in range(2):
        lora.train(batch, ConformanceNLLLoss())
    assert (lora.logprobs(batch) - base).abs().max() > 1e-2  # the policy moved
    assert torch.equal(lora.reference_logprobs(batch), start)  # the reference did not
    assert lora._reference is None
    assert all(layer.adapters_enabled for _, layer in adapter_layers(lora.model))  # switched back on


def test_only_adapters_get_gradients_change_and_have_optimizer_state(tiny_model_dir):
    backend = _backend(tiny_model_dir, optimizer=OptimizerConfig(name="adamw", lr=1e-2, weight_decay=0.01))
    model = backend.model
    adapters = {n for n, _ in model.named_parameters() if n.endswith((".lora_A", ".lora_B"))}
    assert len(adapters) == 2 * 14 and {n for n, p in model.named_parameters() if p.requires_grad} == adapters
    state_ids = {id(p) for group in backend.optimizer.param_groups for p in group["params"]}
    assert state_ids == {id(p) for n, p in model.named_parameters() if n in adapters}

    batch = conformance_batch(_vocab(backend))
    loss = -backend.module(batch["input_ids"], batch["input_lengths"]).sum()
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(grads[n] is None for n in grads if n not in adapters)
    assert all(grads[n] is not None for n in adapters) and any(grads[n].abs().sum() > 0 for n in adapters)
    backend.optimizer.zero_grad(set_to_none=True)

    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    backend.train(batch, ConformanceNLLLoss())
    backend.train(batch, ConformanceNLLLoss())
    after = dict(model.named_parameters())
    assert all(torch.equal(after[n], before[n]) for n in before if n not in adapters)  # base bitwise unchanged
    assert all(not torch.equal(after[n], before[n]) for n in adapters)  # weight decay moves even unused A
    assert {id(p) for p in backend.optimizer.state} <= {id(after[n]) for n in adapters} and backend.optimizer.state


def test_named_weights_are_merged_under_the_base_names_and_pass_check_weights(tiny_model_dir):
    backend = _backend(tiny_model_dir, optimizer=OptimizerConfig(name="adamw", lr=5e-2, weight_decay=0.0))
    batch = conformance_batch(_vocab(backend))
    backend.train(batch, ConformanceNLLLoss())
    backend.train(batch, ConformanceNLLLoss())
    base = _base_state(tiny_model_dir)
    sent = weights(backend)
    assert set(sent) <= set(base) and set(base) - set(sent) == {"lm_head.weight"}  # tied: sent once, as the embeddings
    check_weights(sent.items(), {n: tuple(t.shape) for n, t in base.items()}, backend="hf")
    layers = dict(adapter_layers(backend.model))
    assert len(layers) == 14
    for name, layer in layers.items():
        w, a, b = (t.detach().double() for t in (layer.weight, layer.lora_A, layer.lora_B))
        reference = w + b @ a * (8.0 / 4)  # float64 W + B A alpha / dim
        assert (reference - w).abs().max() > 1e-3  # the adapter moved this layer
        torch.testing.assert_close(sent[f"{name}.weight"].double(), reference, atol=1e-6, rtol=0)
    for name, tensor in sent.items():
        if name.removesuffix(".weight") not in layers:
            assert torch.equal(tensor, base[name])  # everything else is the base


def test_refit_of_merged_weights_gives_the_hf_generator_the_trainers_logprobs(tiny_model_dir):
    from reinforge.backends.generation.hf.backend import HFGenerationBackend
    from reinforge.backends.generation.hf.config import HFGenerationConfig
    from reinforge.core.batch import Batch
    from reinforge.core.model_config import ModelConfig
    from reinforge.core.sampling import SamplingParams

    backend = _backend(tiny_model_dir, optimizer=OptimizerConfig(name="adamw", lr=5e-2, weight_decay=0.0))
    batch = conformance_batch(_vocab(backend))
    for _ in range(3):
        backend.train(batch, ConformanceNLLLoss())
    generator = HFGenerationBackend(
        ModelConfig(model_name=str(tiny_model_dir), max_total_sequence_length=64, lora=LORA),
        HFGenerationConfig(device="cpu"),
    )
    prompts = Batch(input_ids=batch["input_ids"][:4, :6], input_lengths=torch.full((4,), 6))
    greedy = SamplingParams(temperature=0.0, max_new_tokens=10)
    before = generator.generate(prompts, greedy)
    for bucket in backend.named_weights(2**16):
        generator.update_weights(bucket)
    out = generator.generate(prompts, greedy)
    rows = Batch(input_ids=out["output_ids"], input_lengths=out["sequence_lengths"])
    trainer = backend.logprobs(rows)  # [B, T]
    columns = torch.arange(out["output_ids"].shape[1])
    response = (columns >= out["prompt_lengths"][:, None]) & (columns < out["sequence_lengths"][:, None])
    assert not torch.equal(out["output_ids"], before["output_ids"])  # the refit changed what it generates
    torch.testing.assert_close(out["generation_logprobs"][response], trainer[response], atol=1e-5, rtol=0)
    generator.shutdown()


def test_fsdp_in_one_process_trains_the_same_adapters(tiny_model_dir):
    import torch.distributed as dist

    batch = conformance_batch(_vocab(_backend(tiny_model_dir)))
    plain = _backend(tiny_model_dir)
    plain.train(batch, ConformanceNLLLoss())
    sharded = _backend(tiny_model_dir, options=DTensorConfig(logprob_chunk_size=7, fsdp=True))
    try:
        assert sharded.ctx.fsdp
        sharded.train(batch, ConformanceNLLLoss())
        expected = weights(plain)
        for name, tensor in weights(sharded).items():
            torch.testing.assert_close(tensor, expected[name], atol=1e-6, rtol=0)
        torch.testing.assert_close(sharded.reference_logprobs(batch), plain.reference_logprobs(batch), atol=1e-6, rtol=0)
    finally:
        sharded.shutdown()
    assert not dist.is_initialized()


# --------------------------------------------------------------------------- checkpoints and conversion
def _trained(model_dir, steps: int = 2, **fields) -> tuple[DTensorBackend, object]:
    fields.setdefault("optimizer", OptimizerConfig(name="adamw", lr=1e-2, weight_decay=0.01))
    fields.setdefault("scheduler", SchedulerConfig(name="linear_warmup", warmup_steps=4, warmup_start_factor=0.25))
    backend = _backend(model_dir, **fields)
    batch = conformance_batch(_vocab(backend))
    for _ in range(steps):
        backend.train(batch, ConformanceNLLLoss())
    return backend, batch


def _dcp_keys(policy_dir: Path) -> list[str]:
    return list(SafeFileSystemReader(str(policy_dir / "dcp")).read_metadata().state_dict_metadata)


def test_checkpoint_holds_only_adapters_and_resumes_bitwise(tiny_model_dir, tmp_path):
    first, batch = _trained(tiny_model_dir)
    first.save(str(tmp_path / "lora"))
    keys = _dcp_keys(tmp_path / "lora")
    tensors = [k for k in keys if k.startswith("model.") or k.startswith("optimizer.state.")]
    assert tensors and all(".lora_A" in k or ".lora_B" in k for k in tensors), [k for k in tensors if "lora" not in k][:3]
    meta = json.loads((tmp_path / "lora" / "reinforge_backend.json").read_text())
    assert meta["lora"]["dim"] == 4 and meta["lora"]["alpha"] == 8.0
    expected = first.train(batch, ConformanceNLLLoss())

    second = _backend(tiny_model_dir, optimizer=first.policy.optimizer, scheduler=first.policy.scheduler)
    second.load(str(tmp_path / "lora"))
    assert second.step == 2
    resumed = second.train(batch, ConformanceNLLLoss())
    assert resumed == {**expected, **{k: resumed[k] for k in resumed if k.startswith("memory_")}}
    after_first, after_second = weights(first), weights(second)
    assert all(torch.equal(after_first[n], after_second[n]) for n in after_first)

    full, _ = _trained(tiny_model_dir, lora=None, steps=1)
    full.save(str(tmp_path / "full"))
    size = lambda folder: sum(f.stat().st_size for f in (folder / "dcp").iterdir())  # noqa: E731
    assert size(tmp_path / "lora") < 0.2 * size(tmp_path / "full")


def test_resuming_across_a_lora_change_is_refused(tiny_model_dir, tmp_path):
    lora, _ = _trained(tiny_model_dir, steps=1)
    lora.save(str(tmp_path / "lora"))
    full, _ = _trained(tiny_model_dir, lora=None, steps=1)
    full.save(str(tmp_path / "full"))
    with pytest.raises(ReinforgeError, match="full fine-tune checkpoint .* policy.lora.enabled is true"):
        _backend(tiny_model_dir).load(str(tmp_path / "full"))
    with pytest.raises(ReinforgeError, match=r"holds LoRA adapters \(rank 4\).*policy.lora.enabled is false"):
        _backend(tiny_model_dir, None).load(str(tmp_path / "lora"))
    other = LoRAConfig(enabled=True, dim=8, alpha=8.0)
    with pytest.raises(ReinforgeError, match=r"dim: 4 \(checkpoint\) vs 8 \(this run\)"):
        _backend(tiny_model_dir, other).load(str(tmp_path / "lora"))


def test_export_and_conversion_give_the_merged_model(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    backend, batch = _trained(tiny_model_dir, steps=2, optimizer=OptimizerConfig(name="adamw", lr=5e-2, weight_decay=0.0))
    backend.export_hf(str(tmp_path / "exported"))
    backend.save(str(tmp_path / "policy"))
    converted = dcp_to_hf(tmp_path / "policy", tiny_model_dir, tmp_path / "converted")
    exported_model = AutoModelForCausalLM.from_pretrained(tmp_path / "exported", dtype=torch.float32).eval()
    converted_model = AutoModelForCausalLM.from_pretrained(converted, dtype=torch.float32).eval()
    exported, merged = exported_model.state_dict(), converted_model.state_dict()
    assert set(exported) == set(merged) == set(_base_state(tiny_model_dir))  # plain HF names: no adapter key
    assert all(torch.equal(exported[n], merged[n]) for n in exported)
    live = weights(backend)
    assert all(torch.equal(live[n], exported[n]) for n in live)
    torch.testing.assert_close(naive_logprobs(converted_model, batch), backend.logprobs(batch), atol=1e-5, rtol=0)


def test_adapter_folder_in_peft_layout_reproduces_the_merged_logits(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    backend, batch = _trained(tiny_model_dir, steps=2, optimizer=OptimizerConfig(name="adamw", lr=5e-2, weight_decay=0.0))
    backend.save(str(tmp_path / "policy"))
    backend.export_hf(str(tmp_path / "merged"))
    out = dcp_to_hf(tmp_path / "policy", tiny_model_dir, tmp_path / "adapter", adapter=True)
    config = json.loads((out / "adapter_config.json").read_text())
    assert (config["peft_type"], config["r"], config["lora_alpha"]) == ("LORA", 4, 8.0)
    assert len(config["target_modules"]) == 14 and config["base_model_name_or_path"] == str(tiny_model_dir)
    tensors = load_file(out / "adapter_model.safetensors")
    assert len(tensors) == 28 and all(k.startswith("base_model.model.model.layers.") for k in tensors)
    q_a = tensors["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"]
    assert q_a.shape == (4, 128)

    # Read the folder as PEFT does (W + lora_alpha / r * B A on each target) and compare logits with the merged export.
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        for layer in config["target_modules"]:
            a = tensors[f"base_model.model.{layer}.lora_A.weight"]
            b = tensors[f"base_model.model.{layer}.lora_B.weight"]
            model.get_submodule(layer).weight += config["lora_alpha"] / config["r"] * (b @ a)
        merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged", dtype=torch.float32).eval()
        ids = batch["input_ids"][:, :10]
        torch.testing.assert_close(model(ids).logits, merged(ids).logits, atol=1e-5, rtol=0)

    peft = pytest.importorskip("peft", reason="the PEFT cross-check needs peft (not a reinforge dependency)")
    with torch.no_grad():
        loaded = peft.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), str(out)).eval()
        torch.testing.assert_close(loaded(ids).logits, merged(ids).logits, atol=1e-5, rtol=0)


def test_adapter_conversion_of_a_full_checkpoint_is_refused(tiny_model_dir, tmp_path):
    full, _ = _trained(tiny_model_dir, lora=None, steps=1)
    full.save(str(tmp_path / "full"))
    with pytest.raises(ReinforgeError, match="full fine-tune \\(no LoRA adapters\\).*without --adapter"):
        dcp_to_hf(tmp_path / "full", tiny_model_dir, tmp_path / "out", adapter=True)


def test_memory_estimate_counts_gradients_and_moments_of_the_adapters_only(tiny_model_dir):
    lora = _backend(tiny_model_dir)
    full = _backend(tiny_model_dir, None)
    adapters = sum(p.numel() for n, p in lora.model.named_parameters() if isinstance(lora.model.get_submodule(n.rpartition(".")[0]), LoRALinear) and "lora_" in n)
    # 14 layers x rank 4 x (in + out): q 128+128, k 128+64, v 128+64, o 128+128, gate/up 128+256, down 256+128
    assert adapters == 2 * 4 * (256 + 192 + 192 + 256 + 384 + 384 + 384)
    assert lora.memory_estimate.gradients == adapters * 4
    assert lora.memory_estimate.optimizer_state == 2 * adapters * 4
    assert lora.memory_estimate.weights == full.memory_estimate.weights + adapters * 4
    assert full.memory_estimate.gradients == full.memory_estimate.weights


# --------------------------------------------------------------------------- tensor parallel, 2 gloo ranks
@pytest.mark.distributed
def test_tensor_parallel_lora_on_two_ranks_matches_one_process(tiny_model_dir, tmp_path):
    from tests.backends._dtensor_lora_worker import lora_batch, lora_policy
    from tests.torchrun import run_torchrun

    worker = Path(__file__).with_name("_dtensor_lora_worker.py")
    run_torchrun([str(worker), str(tiny_model_dir), str(tmp_path)], timeout=240)
    tp = torch.load(tmp_path / "tp.pt", weights_only=False)
    # Column-parallel W (q_proj): A whole, B split by output rows; row-parallel W (o_proj): A split by input columns.
    assert tp["placements"] == {
        "self_attn.q_proj.lora_A": ["R"], "self_attn.q_proj.lora_B": ["S(0)"],
        "self_attn.o_proj.lora_A": ["S(1)"], "self_attn.o_proj.lora_B": ["R"],
    }  # fmt: skip

    batch = lora_batch()
    single = DTensorBackend(lora_policy(str(tiny_model_dir)), DTensorConfig(share_prompt_forward=False))
    assert torch.equal(tp["logprobs"], tp["reference"])  # B = 0 under TP too
    torch.testing.assert_close(tp["logprobs"], single.logprobs(batch), atol=1e-5, rtol=0)
    metrics = single.train(batch, ConformanceNLLLoss())
    assert tp["loss"] == pytest.approx(metrics["loss"], abs=1e-5)
    assert tp["grad_norm"] == pytest.approx(metrics["grad_norm"], rel=1e-5)
    expected = weights(single)
    assert max((tp["weights"][n] - expected[n]).abs().max().item() for n in expected) <= 1e-5
    torch.testing.assert_close(tp["after_reference"], tp["reference"], atol=1e-6, rtol=0)

    # The adapter checkpoint both TP ranks wrote loads in one process (DCP gathers the split adapters).
    resumed = DTensorBackend(lora_policy(str(tiny_model_dir)), DTensorConfig(share_prompt_forward=False))
    resumed.load(str(tmp_path / "ckpt"))
    assert max((weights(resumed)[n] - tp["weights"][n]).abs().max().item() for n in expected) <= 1e-6
