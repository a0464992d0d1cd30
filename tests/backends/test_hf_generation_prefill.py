"""The `hf` backend's shared prompt prefill and single-call batching: same outputs as the plain path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from reinforge.backends.generation.hf.backend import HFGenerationBackend
from reinforge.backends.generation.hf.config import HFGenerationConfig
from reinforge.core.sampling import SamplingParams
from reinforge.testing.conformance_generation import GenerationBackendConformance
from reinforge.models.tiny_model import build_model
from tests.backends.hf_prompts import assert_same_outputs, cpu_backend, uneven_prompts

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class TestSharedPrefillConformance(GenerationBackendConformance):
    """The whole conformance suite with the prefill shared; groups of n=3 straddle chunks of 4 rows."""

    backend_class = HFGenerationBackend
    backend_options = HFGenerationConfig(device="cpu", max_batch_size=4, share_prompt_prefill=True)


class TestOneCallConformance(GenerationBackendConformance):
    backend_class = HFGenerationBackend
    backend_options = HFGenerationConfig(device="cpu", max_batch_size=None, share_prompt_prefill=True)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("hf-prefill") / "model", size="tiny", seed=0)


@pytest.mark.parametrize("chunk", [4, 5, None])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_sharing_the_prefill_gives_the_same_tokens_and_logprobs(model_dir, chunk, temperature):
    plain, shared = cpu_backend(model_dir, max_batch_size=chunk), cpu_backend(model_dir, max_batch_size=chunk, share_prompt_prefill=True)
    try:
        prompts = uneven_prompts(plain)
        sampling = SamplingParams(temperature=temperature, max_new_tokens=12, n=4, seed=11)
        expected, got = plain.generate(prompts, sampling), shared.generate(prompts, sampling)
        assert_same_outputs(got, expected, logprob_atol=1e-5)
        if temperature > 0:  # the n samples of a prompt differ: the shared cache did not collapse them
            rows = got["output_ids"][:4]
            assert len({tuple(r.tolist()) for r in rows}) > 1
    finally:
        plain.shutdown()
        shared.shutdown()


def test_one_call_for_all_rows_matches_chunked_greedy_output(model_dir):
    chunked, whole = cpu_backend(model_dir, max_batch_size=2), cpu_backend(model_dir, max_batch_size=None)
    try:
        prompts = uneven_prompts(chunked)
        greedy = SamplingParams(temperature=0.0, max_new_tokens=10, n=2)
        assert torch.equal(whole.generate(prompts, greedy)["output_ids"], chunked.generate(prompts, greedy)["output_ids"])
    finally:
        chunked.shutdown()
        whole.shutdown()


def test_the_prefill_runs_once_per_prompt_and_generate_then_reads_only_the_last_prompt_token(model_dir):
    backend = cpu_backend(model_dir, max_batch_size=None, share_prompt_prefill=True)
    shapes: list[tuple[int, int]] = []
    hook = backend.model.register_forward_pre_hook(
        lambda module, args, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True
    )
    try:
        prompts = uneven_prompts(backend)
        width = int(prompts["input_lengths"].max())
        backend.generate(prompts, SamplingParams(temperature=1.0, max_new_tokens=3, n=4, seed=1))
    finally:
        hook.remove()
        backend.shutdown()
    # 3 distinct prompts prefilled once (all but the last column), then 12 rows one token at a time.
    assert shapes == [(3, width - 1), (12, 1), (12, 1), (12, 1)]
