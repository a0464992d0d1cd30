"""The `hf` backend's reserved KV cache and its rows-per-call bound.

The reserved cache must be invisible in the outputs (the same ids and logprobs as transformers'
DynamicCache, greedy and sampled, with and without the shared prefill, chunked or not) and must
really write in place (the keys stay views of one buffer across decode steps).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import Qwen2Config
from transformers.cache_utils import DynamicLayer

from reinforge.backends.generation.hf.backend import HFGenerationBackend, _rows_per_call
from reinforge.backends.generation.hf.config import HFGenerationConfig
from reinforge.backends.generation.hf.kv_cache import ReservedKVLayer, reserved_kv_cache
from reinforge.core.sampling import SamplingParams
from reinforge.testing.conformance_generation import GenerationBackendConformance
from reinforge.models.tiny_model import build_model
from tests.backends.hf_prompts import assert_same_outputs, cpu_backend, uneven_prompts


class TestDynamicCacheConformance(GenerationBackendConformance):
    """The whole conformance suite with transformers' own cache (the reserved one is the default)."""

    backend_class = HFGenerationBackend
    backend_options = HFGenerationConfig(device="cpu", max_batch_size=4, reserve_kv_cache=False)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("hf-kv") / "model", size="tiny", seed=0)


@pytest.mark.parametrize("share", [False, True])
@pytest.mark.parametrize("chunk", [5, None])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_the_reserved_cache_gives_the_same_tokens_and_logprobs_as_dynamic_cache(model_dir, share, chunk, temperature):
    dynamic = cpu_backend(model_dir, max_batch_size=chunk, share_prompt_prefill=share, reserve_kv_cache=False)
    reserved = cpu_backend(model_dir, max_batch_size=chunk, share_prompt_prefill=share)
    try:
        prompts = uneven_prompts(dynamic)
        sampling = SamplingParams(temperature=temperature, max_new_tokens=20, n=4, seed=5)
        expected, got = dynamic.generate(prompts, sampling), reserved.generate(prompts, sampling)
        assert_same_outputs(got, expected, logprob_atol=1e-6)
        assert int(got["generation_lengths"].max()) > 10  # long enough that the cache grew over many steps
    finally:
        dynamic.shutdown()
        reserved.shutdown()


@pytest.mark.parametrize("share", [False, True])
def test_generate_writes_every_step_into_one_buffer_per_layer(model_dir, share):
    backend = cpu_backend(model_dir, share_prompt_prefill=share)
    seen: list[tuple[int, int]] = []  # (data_ptr, length) of layer 0's keys after each forward
    original = ReservedKVLayer.update

    def spy(layer, key_states, value_states, *args, **kwargs):
        keys, values = original(layer, key_states, value_states, *args, **kwargs)
        if layer is cache_layers[0]:
            seen.append((keys.data_ptr(), keys.shape[2]))
        return keys, values

    cache_layers: list[object] = []
    build = reserved_kv_cache

    def recording_build(model, length):
        cache = build(model, length)
        cache_layers[:] = cache.layers
        return cache

    mp = pytest.MonkeyPatch()
    mp.setattr(ReservedKVLayer, "update", spy)
    mp.setattr("reinforge.backends.generation.hf.backend.reserved_kv_cache", recording_build)
    try:
        prompts = uneven_prompts(backend)
        backend.generate(prompts, SamplingParams(temperature=1.0, max_new_tokens=8, n=2, seed=3))
    finally:
        mp.undo()
        backend.shutdown()
    width = int(prompts["input_lengths"].max())
    # The prefill, then one position per step. With the shared prefill, the first write is the b expanded rows'
    # W-1 positions taken over from the U-row prefill, and generate then computes the last prompt token itself.
    first = width - 1 if share else width
    assert [length for _, length in seen] == list(range(first, width + 8))
    assert len({pointer for pointer, _ in seen}) == 1  # never reallocated: written in place
    assert cache_layers[0].capacity == width + 8


def test_the_layer_matches_concatenation_through_select_crop_and_overflow():
    torch.manual_seed(0)
    reserved, plain = ReservedKVLayer(capacity=6), DynamicLayer()
    steps = [torch.randn(4, 2, n, 3) for n in (3, 1, 1)]
    for states in steps:
        ours, ref = reserved.update(states, -states), plain.update(states, -states)
        assert torch.equal(ours[0], ref[0]) and torch.equal(ours[1], ref[1])
    buffer = reserved.keys.data_ptr()
    for layer in (reserved, plain):  # rows 2, 0, 0: a new tensor, no longer a view of the buffer
        layer.batch_select_indices(torch.tensor([2, 0, 0]))
    more = torch.randn(3, 2, 1, 3)
    ours, ref = reserved.update(more, -more), plain.update(more, -more)
    assert torch.equal(ours[0], ref[0]) and torch.equal(ours[1], ref[1]) and ours[0].shape[2] == 6
    assert reserved.keys.data_ptr() != buffer  # reserved again around the selected rows
    for layer in (reserved, plain):
        layer.crop(-2)  # a view of the same buffer: the next write goes over the cropped positions
    again = torch.randn(3, 2, 2, 3)
    ours, ref = reserved.update(again, -again), plain.update(again, -again)
    assert torch.equal(ours[0], ref[0]) and torch.equal(ours[1], ref[1])
    past = torch.randn(3, 2, 4, 3)  # 6 + 4 positions: past the capacity, so the buffer grows to fit
    ours, ref = reserved.update(past, -past), plain.update(past, -past)
    assert torch.equal(ours[0], ref[0]) and torch.equal(ours[1], ref[1]) and ours[0].shape[2] == 10
    assert reserved.get_seq_length() == plain.get_seq_length() == 10


def test_only_plain_full_attention_layers_are_reserved():
    mixed = Qwen2Config(
        hidden_size=16, num_hidden_layers=3, num_attention_heads=2, num_key_value_heads=1, vocab_size=32,
        layer_types=["full_attention", "sliding_attention", "full_attention"], sliding_window=4, use_sliding_window=True,
    )
    cache = reserved_kv_cache(SimpleNamespace(config=mixed), 40)
    kinds = [type(layer).__name__ for layer in cache.layers]
    assert kinds[0] == kinds[2] == "ReservedKVLayer" and kinds[1] != "ReservedKVLayer"
    assert cache.layers[0].capacity == 40
    sliding_only = Qwen2Config(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, vocab_size=32,
        layer_types=["sliding_attention", "sliding_attention"], sliding_window=4, use_sliding_window=True,
    )
    assert reserved_kv_cache(SimpleNamespace(config=sliding_only), 40) is None  # generate builds its own


@pytest.mark.parametrize(
    ("rows", "width", "max_batch_size", "max_batch_tokens", "expected"),
    [
        (128, 109, None, 65536, 128),  # the CPU demo: 128 x 109 = 13 952 positions, one call
        (128, 109, 64, 65536, 64),  # the row cap
        (128, 109, None, 1000, 9),  # 1000 // 109
        (32, 24640, None, 65536, 2),  # 24K-token rollouts: two rows per call
        (8, 70000, None, 65536, 1),  # a row longer than the bound still runs, alone
        (5, 50, None, None, 5),  # no bound at all
        (5, 50, 100, None, 5),  # a cap above the rows
    ],
)
def test_rows_per_call(rows, width, max_batch_size, max_batch_tokens, expected):
    options = HFGenerationConfig(device="cpu", max_batch_size=max_batch_size, max_batch_tokens=max_batch_tokens)
    assert _rows_per_call(rows, width, options) == expected


def test_calls_follow_the_token_bound(model_dir):
    backend = cpu_backend(model_dir, max_batch_tokens=1)  # one row per call
    rows: list[int] = []
    hook = backend.model.register_forward_pre_hook(
        lambda module, args, kwargs: rows.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    try:
        backend.generate(uneven_prompts(backend), SamplingParams(temperature=0.0, max_new_tokens=2, n=2))
    finally:
        hook.remove()
        backend.shutdown()
    assert rows and set(rows) == {1}
    assert len(rows) >= 6 and len(rows) <= 12  # 6 calls (3 prompts x n=2) of up to 2 forwards each
