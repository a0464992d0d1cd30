"""The vllm backend's grouping of identical adjacent prompts (no engine needed; the engine test is in tests/vllm_cpu)."""

from __future__ import annotations

from reinforge.backends.generation.vllm.async_engine import FinishedSample
from reinforge.backends.generation.vllm.backend import _as_row, _identical_runs
from reinforge.backends.generation.vllm.config import VllmConfig


def _prompts(*rows: list[int]) -> list[dict[str, list[int]]]:
    return [{"prompt_token_ids": row} for row in rows]


def test_identical_runs_are_adjacent_copies_only() -> None:
    a, b = [5, 6, 7], [5, 6]
    assert _identical_runs(_prompts(a, a, a, b, b, a)) == [(0, 3), (3, 2), (5, 1)]  # a again later: a new run
    assert _identical_runs(_prompts(a, b, a)) == [(0, 1), (1, 1), (2, 1)]
    assert _identical_runs(_prompts(b)) == [(0, 1)]


def test_a_grouped_sample_becomes_its_row() -> None:
    sample = FinishedSample(prompt=1, index=2, token_ids=[9], logprobs=None, finish_reason="stop")
    # requests starting at rows 0 and 3: sample 2 of request 1 is row 5, as sample 0 of its own request
    assert _as_row(sample, [0, 3]) == FinishedSample(prompt=5, index=0, token_ids=[9], logprobs=None, finish_reason="stop")
    assert _as_row(sample, None) is sample


def test_grouping_is_off_by_default_and_prefix_caching_on() -> None:
    options = VllmConfig()
    assert options.group_identical_prompts is False and options.enable_prefix_caching is True
