"""The `dtensor` training backend in one process: the conformance suite plus what is specific to it."""

from __future__ import annotations

import math

import pytest
import torch

from reinforge.backends.training.dtensor.backend import DTensorBackend
from reinforge.backends.training.dtensor.checkpointing import dcp_to_hf
from reinforge.backends.training.dtensor.config import DTensorConfig
from reinforge.backends.training.dtensor.logprobs import token_logprobs
from reinforge.backends.training.dtensor.optim import lr_multiplier
from reinforge.core.errors import ReinforgeError
from reinforge.core.interfaces import TrainingBackend
from reinforge.core.run_config import OptimizerConfig, PolicyConfig, SchedulerConfig
from reinforge.testing.conformance_training import *  # noqa: F403 - the suite's tests and fixtures
from reinforge.testing.conformance_training import (
    ConformanceNLLLoss,
    conformance_batch,
    naive_logprobs,
    weights,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

VOCAB = 704  # the kit's tiny model; only needs to be <= its vocabulary


@pytest.fixture
def dtensor_options() -> DTensorConfig:
    # Chunks of 7 positions: the 24-token conformance rows take the chunked (and recomputed) path.
    return DTensorConfig(logprob_chunk_size=7)


@pytest.fixture
def conformance_lora() -> bool:
    return True  # dtensor registers Capabilities(lora=True): the suite's LoRA tests run


@pytest.fixture
def training_backend_factory(dtensor_options):
    def make(policy: PolicyConfig, *, need_reference: bool = False) -> TrainingBackend:
        return DTensorBackend(policy, dtensor_options, need_reference=need_reference)

    return make


def _policy(model_dir, **fields) -> PolicyConfig:
    settings = {
        "model_name": str(model_dir),
        "train_global_batch_size": 8,
        "train_micro_batch_size": 2,
        "logprob_batch_size": 4,
        "max_total_sequence_length": 64,
        "max_grad_norm": None,
        "optimizer": OptimizerConfig(name="sgd", lr=1.0, weight_decay=0.0),
    }
    settings.update(fields)
    return PolicyConfig(**settings)


def _vocab(backend: DTensorBackend) -> int:
    return backend.model.config.vocab_size


def test_is_a_training_backend(make_training_backend):
    assert isinstance(make_training_backend(), TrainingBackend)


@pytest.mark.parametrize("chunk", [1, 3, 23, 512])
def test_chunked_logprobs_equal_the_full_logits_computation(conformance_model_dir, chunk):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(conformance_model_dir).eval()
    batch = conformance_batch(model.config.vocab_size)
    ids, lengths = batch["input_ids"], batch["input_lengths"]
    mask = (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).long()
    with torch.no_grad():
        hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state  # [B, T, H]
        for temperature in (1.0, 0.7):
            chunked = token_logprobs(
                model.lm_head, hidden, ids, lengths, temperature=temperature, chunk_size=chunk, recompute=False
            )
            torch.testing.assert_close(chunked, naive_logprobs(model, batch, temperature), atol=1e-5, rtol=0)


def test_recomputed_chunks_give_the_same_update(conformance_model_dir):
    batch = conformance_batch(VOCAB)
    small = DTensorBackend(_policy(conformance_model_dir), DTensorConfig(logprob_chunk_size=5))
    whole = DTensorBackend(_policy(conformance_model_dir), DTensorConfig(logprob_chunk_size=512))
    loss = small.train(batch, ConformanceNLLLoss())["loss"]
    assert loss == pytest.approx(whole.train(batch, ConformanceNLLLoss())["loss"], abs=1e-6)
    expected = weights(whole)
    for name, tensor in weights(small).items():
        torch.testing.assert_close(tensor, expected[name], atol=1e-6, rtol=0)


def test_activation_checkpointing_gives_the_same_update(conformance_model_dir):
    batch = conformance_batch(VOCAB)
    plain = DTensorBackend(_policy(conformance_model_dir))
    ckpt = DTensorBackend(_policy(conformance_model_dir), DTensorConfig(activation_checkpointing=True))
    assert any(getattr(m, "gradient_checkpointing", False) for m in ckpt.model.modules())
    plain.train(batch, ConformanceNLLLoss())
    ckpt.train(batch, ConformanceNLLLoss())
    after = weights(plain)
    for name, tensor in weights(ckpt).items():
        torch.testing.assert_close(tensor, after[name], atol=1e-6, rtol=0)


def test_lr_multiplier_hand_worked_values():
    warm = SchedulerConfig(name="linear_warmup", warmup_steps=4, warmup_start_factor=0.1)
    assert [lr_multiplier(warm, s) for s in range(6)] == pytest.approx([0.1, 0.325, 0.55, 0.775, 1.0, 1.0])
    cosine = SchedulerConfig(name="cosine", warmup_steps=2, warmup_start_factor=0.5, total_steps=6, min_lr_ratio=0.1)
    # warmup 0.5, 0.75; then 0.1 + 0.9 * (1 + cos(pi * (s - 2) / 4)) / 2
    expected = [0.5, 0.75, 1.0, 0.1 + 0.45 * (1 + math.cos(math.pi / 4)), 0.55]
    expected += [0.1 + 0.45 * (1 + math.cos(3 * math.pi / 4)), 0.1, 0.1]
    assert [lr_multiplier(cosine, s) for s in range(8)] == pytest.approx(expected)
    assert lr_multiplier(SchedulerConfig(), 1000) == 1.0


def test_scheduler_steps_once_per_train_call(conformance_model_dir):
    scheduler = SchedulerConfig(name="linear_warmup", warmup_steps=2, warmup_start_factor=0.5)
    backend = DTensorBackend(_policy(conformance_model_dir, optimizer=OptimizerConfig(lr=0.01), scheduler=scheduler))
    batch = conformance_batch(_vocab(backend))
    assert [backend.train(batch, ConformanceNLLLoss())["lr"] for _ in range(3)] == pytest.approx([0.005, 0.0075, 0.01])
    assert backend.step == 3


def test_gradient_clipping_caps_the_update(conformance_model_dir):
    batch = conformance_batch(VOCAB)
    free = DTensorBackend(_policy(conformance_model_dir))
    clipped = DTensorBackend(_policy(conformance_model_dir, max_grad_norm=0.01))
    start = weights(free)
    norm = free.train(batch, ConformanceNLLLoss())["grad_norm"]
    assert clipped.train(batch, ConformanceNLLLoss())["grad_norm"] == pytest.approx(norm)  # reported before clipping
    step = torch.cat([(w - start[n]).flatten() for n, w in weights(clipped).items()])
    assert norm > 0.01 and step.norm().item() == pytest.approx(0.01, rel=1e-3)


def test_export_generates_the_same_greedy_tokens(conformance_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    backend = DTensorBackend(_policy(conformance_model_dir, optimizer=OptimizerConfig(lr=0.05)))
    batch = conformance_batch(_vocab(backend))
    backend.train(batch, ConformanceNLLLoss())
    backend.export_hf(str(tmp_path / "hf"))
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    prompt = batch["input_ids"][:2, :5]
    settings = {"max_new_tokens": 12, "do_sample": False, "pad_token_id": 0}
    with torch.no_grad():
        live = backend.model.eval().generate(prompt, attention_mask=torch.ones_like(prompt), **settings)
        again = exported.generate(prompt, attention_mask=torch.ones_like(prompt), **settings)
    assert torch.equal(live, again) and live.shape[1] > 5


def test_dcp_to_hf_converts_a_saved_checkpoint(conformance_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    backend = DTensorBackend(_policy(conformance_model_dir, optimizer=OptimizerConfig(lr=0.05)))
    batch = conformance_batch(_vocab(backend))
    backend.train(batch, ConformanceNLLLoss())
    backend.save(str(tmp_path / "policy"))
    out = DTensorBackend.checkpoint_to_hf(str(tmp_path / "policy"), str(conformance_model_dir), str(tmp_path / "hf"))
    assert out == tmp_path / "hf" and (out / "tokenizer_config.json").is_file()
    converted = AutoModelForCausalLM.from_pretrained(out).eval()
    torch.testing.assert_close(naive_logprobs(converted, batch), backend.logprobs(batch), atol=1e-5, rtol=0)
    with pytest.raises(ReinforgeError, match="no torch.distributed.checkpoint"):
        dcp_to_hf(tmp_path / "missing", conformance_model_dir, tmp_path / "x")


def test_load_rejects_a_folder_that_is_not_a_checkpoint(conformance_model_dir, tmp_path):
    backend = DTensorBackend(_policy(conformance_model_dir))
    with pytest.raises(ReinforgeError, match="not a dtensor checkpoint"):
        backend.load(str(tmp_path))


@pytest.mark.parametrize("tp", [3, 4])
def test_tensor_parallel_size_must_divide_the_heads(conformance_model_dir, tp):
    # The tiny model has 4 attention heads and 2 key/value heads.
    with pytest.raises(ReinforgeError, match=rf"tensor_parallel_size={tp} does not divide .*heads"):
        DTensorBackend(_policy(conformance_model_dir), DTensorConfig(tensor_parallel_size=tp))


def test_tensor_parallel_needs_that_many_processes(conformance_model_dir):
    with pytest.raises(ReinforgeError, match="world size 1.*torchrun"):
        DTensorBackend(_policy(conformance_model_dir), DTensorConfig(tensor_parallel_size=2))


def test_missing_model_folder_is_a_user_error(tmp_path):
    with pytest.raises(ReinforgeError, match="policy.model_name"):
        DTensorBackend(_policy(tmp_path / "nope"))


def test_missing_columns_and_bad_temperature_are_user_errors(conformance_model_dir):
    backend = DTensorBackend(_policy(conformance_model_dir))
    batch = conformance_batch(_vocab(backend))
    del batch["token_mask"]
    with pytest.raises(ReinforgeError, match="token_mask"):
        backend.train(batch, ConformanceNLLLoss())
    with pytest.raises(ReinforgeError, match="temperature"):
        backend.logprobs(batch, temperature=0.0)


def test_sample_mask_defaults_to_ones(conformance_model_dir):
    backend = DTensorBackend(_policy(conformance_model_dir))
    batch = conformance_batch(_vocab(backend))
    del batch["sample_mask"]
    assert backend.train(batch, ConformanceNLLLoss())["tokens"] == batch["token_mask"].sum().item()


def test_offload_and_onload_are_tracked_and_training_continues(conformance_model_dir):
    backend = DTensorBackend(_policy(conformance_model_dir))
    batch = conformance_batch(_vocab(backend))
    backend.offload()
    assert backend.offloaded
    backend.onload()
    assert not backend.offloaded
    backend.offload()
    assert math.isfinite(backend.train(batch, ConformanceNLLLoss())["loss"])  # onloads by itself
    assert not backend.offloaded


def test_reference_is_loaded_lazily_or_eagerly(conformance_model_dir):
    lazy = DTensorBackend(_policy(conformance_model_dir))
    eager = DTensorBackend(_policy(conformance_model_dir), need_reference=True)
    assert lazy._reference is None and eager._reference is not None
    assert not any(p.requires_grad for p in eager._reference.parameters())
    lazy.reference_logprobs(conformance_batch(VOCAB))
    assert lazy._reference is not None


def test_bfloat16_trains_and_returns_float32_logprobs(conformance_model_dir):
    backend = DTensorBackend(_policy(conformance_model_dir, precision="bfloat16", optimizer=OptimizerConfig(lr=1e-3)))
    batch = conformance_batch(_vocab(backend))
    assert backend.model.model.embed_tokens.weight.dtype == torch.bfloat16
    assert math.isfinite(backend.train(batch, ConformanceNLLLoss())["loss"])
    assert backend.logprobs(batch).dtype == torch.float32
    assert all(t.dtype == torch.bfloat16 for bucket in backend.named_weights() for _, t in bucket)


def test_fsdp_in_one_process_matches_the_plain_module(conformance_model_dir):
    """`fsdp: true` in a single process creates (and on shutdown destroys) a one-rank gloo group."""
    import torch.distributed as dist

    batch = conformance_batch(VOCAB)
    plain = DTensorBackend(_policy(conformance_model_dir))
    plain.train(batch, ConformanceNLLLoss())
    sharded = DTensorBackend(_policy(conformance_model_dir), DTensorConfig(fsdp=True))
    try:
        assert dist.is_initialized() and sharded.ctx.fsdp
        sharded.train(batch, ConformanceNLLLoss())
        expected = weights(plain)
        for name, tensor in weights(sharded).items():
            torch.testing.assert_close(tensor, expected[name], atol=1e-6, rtol=0)
    finally:
        sharded.shutdown()
    assert not dist.is_initialized()
