"""The `sglang` and `trtllm` backends against the REAL engines on the kit's tiny model (NVIDIA GPU only).

Written but never run in this project so far: its machines have no GPU, and neither engine
installs there (docs/engines/generation.md). Each test skips, with the reason, when CUDA is missing or
the engine cannot be imported. On a GPU machine: `pytest -m gpu tests/gpu`.

What it checks, per engine: the conformance suite's layout on real outputs, generation
logprobs against the dtensor trainer's (mean |delta| < 1e-3, float32), and that a refit
changes the outputs and restoring the weights restores them.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from reinforge.core.batch import Batch
from reinforge.core.model_config import ModelConfig
from reinforge.core.run_config import PolicyConfig
from reinforge.core.sampling import SamplingParams
from reinforge.testing.conformance_generation import GenerationBackendConformance, load_hf_weights

pytestmark = pytest.mark.gpu

_NO_CUDA = not torch.cuda.is_available()


def _engine_missing(module: str) -> bool:
    return importlib.util.find_spec(module) is None


def _skip_unless(module: str, extra: str) -> pytest.MarkDecorator:
    reason = (
        "needs an NVIDIA GPU (torch.cuda.is_available() is False)"
        if _NO_CUDA
        else f"needs {module}: pip install 'reinforge[{extra}]'"
    )
    return pytest.mark.skipif(_NO_CUDA or _engine_missing(module), reason=reason)


needs_sglang = _skip_unless("sglang", "sglang")
needs_trtllm = _skip_unless("tensorrt_llm", "trtllm")


def _sglang_backend(policy: PolicyConfig) -> Any:
    from reinforge.backends.generation.sglang.backend import SglangGenerationBackend
    from reinforge.backends.generation.sglang.config import SglangConfig

    return SglangGenerationBackend(policy, SglangConfig(mem_fraction_static=0.3, disable_cuda_graph=True), seed=0)


def _trtllm_backend(policy: PolicyConfig) -> Any:
    from reinforge.backends.generation.trtllm.backend import TrtllmGenerationBackend
    from reinforge.backends.generation.trtllm.config import TrtllmConfig

    return TrtllmGenerationBackend(policy, TrtllmConfig(free_gpu_memory_fraction=0.3), seed=0)


@needs_sglang
class TestSglangOnGpu(GenerationBackendConformance):
    logprob_atol = 1e-3

    def make_backend(self, model: ModelConfig) -> Any:
        return _sglang_backend(model)


@needs_trtllm
class TestTrtllmOnGpu(GenerationBackendConformance):
    logprob_atol = 1e-3
    logprob_top_p = 1.0  # "processed" logprobs are renormalised over the nucleus

    def make_backend(self, model: ModelConfig) -> Any:
        return _trtllm_backend(model)


# -------------------------------------------------------------------------- trainer agreement and refit
@pytest.fixture(params=[pytest.param(_sglang_backend, marks=needs_sglang, id="sglang"),
                        pytest.param(_trtllm_backend, marks=needs_trtllm, id="trtllm")])
def engine(request: pytest.FixtureRequest, tiny_model_dir: Path) -> Iterator[tuple[Any, PolicyConfig]]:
    policy = PolicyConfig(model_name=str(tiny_model_dir), precision="float32", max_total_sequence_length=128)
    backend = request.param(policy)
    yield backend, policy
    backend.shutdown()


def _prompts(tokenizer_dir: Path, count: int = 6) -> Batch:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    ids = [
        tokenizer.apply_chat_template([{"role": "user", "content": f"What is {i} + {i + 3}?"}], add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
        for i in range(count)
    ]
    return Batch.from_sequences([list(x) for x in ids], pad_id=tokenizer.pad_token_id)


def test_logprobs_agree_with_the_dtensor_trainer(engine: tuple[Any, PolicyConfig], tiny_model_dir: Path) -> None:
    from reinforge.backends.training.dtensor.backend import DTensorBackend

    backend, policy = engine
    out = backend.generate(_prompts(tiny_model_dir), SamplingParams(temperature=0.8, max_new_tokens=16, seed=3))
    trainer = DTensorBackend(policy)
    trainer_logprobs = trainer.logprobs(Batch(input_ids=out["output_ids"], input_lengths=out["sequence_lengths"]), temperature=0.8)
    columns = torch.arange(out["output_ids"].shape[1]).unsqueeze(0)
    mask = (columns >= out["prompt_lengths"].unsqueeze(1)) & (columns < out["sequence_lengths"].unsqueeze(1))
    delta = (trainer_logprobs.cpu() - out["generation_logprobs"]).abs()[mask]
    print(f"mean |delta logprob| vs dtensor: {delta.mean():.2e} (max {delta.max():.2e})")
    assert delta.mean() < 1e-3


def test_refit_changes_outputs_and_restoring_restores_them(engine: tuple[Any, PolicyConfig], tiny_model_dir: Path) -> None:
    backend, _ = engine
    greedy = SamplingParams(temperature=0.0, max_new_tokens=12)
    batch = _prompts(tiny_model_dir, 4)
    before = backend.generate(batch, greedy)
    original = load_hf_weights(tiny_model_dir)
    noise = torch.Generator().manual_seed(0)
    backend.update_weights([(k, v + 0.5 * torch.randn(v.shape, generator=noise)) for k, v in original.items()])
    assert backend.last_refit.buckets >= 1 and backend.last_refit.bytes > 0
    assert not torch.equal(backend.generate(batch, greedy)["output_ids"], before["output_ids"])
    backend.update_weights(list(original.items()))
    assert torch.equal(backend.generate(batch, greedy)["output_ids"], before["output_ids"])
