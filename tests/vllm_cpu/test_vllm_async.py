"""The vllm backend on vLLM's async engine (AsyncLLM), for real on CPU: the generation conformance
suite (so `generate` keeps its contract), refit through the engine process, and `generate_stream`."""

from __future__ import annotations

import os

import pytest
import torch

pytest.importorskip("vllm", reason="vllm is not installed in this environment; scripts/test.sh runs these in .venv-vllm")

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

from reinforge.backends.generation.vllm.backend import VllmGenerationBackend  # noqa: E402
from reinforge.backends.generation.vllm.config import VllmConfig  # noqa: E402
from reinforge.core.batch import Batch  # noqa: E402
from reinforge.core.errors import ReinforgeError  # noqa: E402
from reinforge.core.sampling import SamplingParams  # noqa: E402
from reinforge.testing.conformance_generation import GenerationBackendConformance  # noqa: E402

pytestmark = [pytest.mark.vllm, pytest.mark.integration]
ASYNC_OPTIONS = VllmConfig(enforce_eager=True, kv_cache_space_gb=1, async_engine=True, enable_prefix_caching=False)


def rows_by_index(pieces: list[tuple[int, Batch]]) -> dict[int, list[int]]:
    """Each streamed sample's token ids (prompt + response, padding cut), keyed by its row."""
    return {row: piece["output_ids"][0, : int(piece["sequence_lengths"][0])].tolist() for row, piece in pieces}


class TestVllmAsyncEngine(GenerationBackendConformance):
    backend_class = VllmGenerationBackend
    backend_options = ASYNC_OPTIONS
    logprob_atol = 1e-3
    logprob_top_p = 1.0  # vLLM's processed logprobs are renormalised over the top-p nucleus

    def test_streamed_greedy_samples_reassemble_into_generate_output(self, gen_backend, gen_prompts):
        greedy = SamplingParams(temperature=0.0, max_new_tokens=12)
        expected = gen_backend.generate(gen_prompts, greedy)
        pieces = list(gen_backend.generate_stream(gen_prompts, greedy))
        rows = [row for row, _ in pieces]
        assert sorted(rows) == list(range(len(expected)))  # every sample exactly once
        streamed = rows_by_index(pieces)
        for row in range(len(expected)):
            length = int(expected["sequence_lengths"][row])
            assert streamed[row] == expected["output_ids"][row, :length].tolist()
        for row, piece in pieces:  # the other columns agree too, carried ones included
            assert len(piece) == 1
            assert piece["metadata"] == [expected["metadata"][row]]
            for key in ("prompt_lengths", "generation_lengths", "truncated", "prompt_index"):
                assert piece[key].tolist() == expected[key][row : row + 1].tolist(), key
            width = int(piece["sequence_lengths"][0])
            assert torch.allclose(piece["generation_logprobs"][0, :width], expected["generation_logprobs"][row, :width], atol=1e-4)

    def test_sampled_stream_yields_every_sample_once_and_matches_generate(self, gen_backend, gen_prompts):
        sampling = SamplingParams(temperature=1.0, max_new_tokens=10, n=4, seed=11)
        pieces = list(gen_backend.generate_stream(gen_prompts, sampling))
        assert sorted(row for row, _ in pieces) == list(range(len(gen_prompts) * 4))
        expected = gen_backend.generate(gen_prompts, sampling)  # the same seeds sample the same tokens
        for row, ids in rows_by_index(pieces).items():
            assert ids == expected["output_ids"][row, : int(expected["sequence_lengths"][row])].tolist()

    def test_a_short_generation_arrives_before_a_long_one(self, gen_backend, gen_prompts):
        # Seeded, so every row's tokens are known in advance (a stop token changes when a row ends, not what
        # it samples): pick a stop token that ends one row strictly earlier than all the others. The engine
        # decodes all rows in lockstep, so that row finishes at an earlier step and must be yielded first.
        seeded = SamplingParams(temperature=1.0, max_new_tokens=32, seed=21)
        full = gen_backend.generate(gen_prompts, seeded)
        responses = [full["output_ids"][i, int(full["prompt_lengths"][i]) : int(full["sequence_lengths"][i])].tolist()
                     for i in range(len(full))]
        short_row, stop_token, stop_at = pick_stop_token(responses)
        sampling = attrs_evolve(seeded, stop_token_ids=(stop_token,))
        order = [(row, int(piece["generation_lengths"][0])) for row, piece in gen_backend.generate_stream(gen_prompts, sampling)]
        assert order[0] == (short_row, stop_at + 1)
        assert sorted(row for row, _ in order) == list(range(len(gen_prompts)))
        assert all(length > stop_at + 1 for _, length in order[1:])

    def test_stopping_early_aborts_the_rest_and_the_engine_keeps_working(self, gen_backend, gen_prompts):
        stream = gen_backend.generate_stream(gen_prompts, SamplingParams(temperature=1.0, max_new_tokens=40, n=4, seed=5))
        next(stream)
        stream.close()
        greedy = SamplingParams(temperature=0.0, max_new_tokens=8)
        assert torch.equal(gen_backend.generate(gen_prompts, greedy)["output_ids"], gen_backend.generate(gen_prompts, greedy)["output_ids"])

    def test_stream_errors_are_user_errors(self, gen_backend, gen_prompts):
        with pytest.raises(ReinforgeError, match="empty batch"):
            next(gen_backend.generate_stream(gen_prompts.select([]), SamplingParams(max_new_tokens=4)))


def pick_stop_token(responses: list[list[int]]) -> tuple[int, int, int]:
    """(row, token, position): a token whose first occurrence in `row` comes before its first in every other row."""
    best = None
    for row, response in enumerate(responses):
        for position, token in enumerate(response):
            others = [r.index(token) if token in r else len(r) for j, r in enumerate(responses) if j != row]
            if all(position < other for other in others) and (best is None or position < best[2]):
                best = (row, token, position)
    assert best is not None, "every row shares its tokens in the same order; the test needs different prompts"
    return best


def attrs_evolve(sampling: SamplingParams, **changes) -> SamplingParams:
    import attrs

    return attrs.evolve(sampling, **changes)


def test_generate_stream_needs_the_async_engine(tiny_model_dir):
    from reinforge.core.run_config import PolicyConfig

    policy = PolicyConfig(model_name=str(tiny_model_dir), precision="float32", max_total_sequence_length=64)
    backend = VllmGenerationBackend(policy, VllmConfig(enforce_eager=True, kv_cache_space_gb=1), seed=0)
    try:
        with pytest.raises(ReinforgeError, match="async_engine=true"):
            next(backend.generate_stream(Batch.from_sequences([[1, 2, 3]], pad_id=0), SamplingParams(max_new_tokens=4)))
    finally:
        backend.shutdown()
