"""The `trtllm` backend on CPU, driving `FakeTrtllmLLM` (a stand-in: TensorRT-LLM itself needs a GPU).

What this proves: the adapter's translation of sampling parameters, its output -> Batch
conversion (including stop strings TensorRT-LLM matches only as token sequences), bucketed
refit through IPC handles, sleep/wake RPCs and error handling, with real tokens and logprobs
from the tiny model. What it cannot prove: that the real TensorRT-LLM accepts these calls
(tests/gpu/test_engines_gpu.py does, on a GPU; not run here).
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
import torch

from reinforge.backends.generation.engine_common import cut_at_stop_strings
from reinforge.backends.generation.trtllm.backend import (
    TrtllmGenerationBackend,
    completion_from_output,
    engine_kwargs,
    ipc_handles,
    sampling_kwargs,
)
from reinforge.backends.generation.trtllm.config import TrtllmConfig
from reinforge.core.config import structure
from reinforge.core.errors import ReinforgeError
from reinforge.core.run_config import PolicyConfig
from reinforge.core.sampling import SamplingParams
from reinforge.testing.conformance_generation import GenerationBackendConformance
from reinforge.testing.fake_engines import TRTLLM_API, FakeCompletionOutput, FakeTrtllmSamplingParams, Logprob
from tests.backends import engine_backend_helpers as helpers

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAKE = TrtllmConfig(engine_api="reinforge.testing.fake_engines:TRTLLM_API")


class TestTrtllmConformance(GenerationBackendConformance):
    """The full suite; "processed" logprobs are renormalised over the top-p nucleus, so the check runs at top_p=1."""

    backend_class = TrtllmGenerationBackend
    backend_options = FAKE
    logprob_top_p = 1.0


@pytest.fixture(scope="module")
def backend(tiny_model_dir: Path) -> Iterator[TrtllmGenerationBackend]:
    yield from helpers.started(TrtllmGenerationBackend, tiny_model_dir, FAKE)


# -------------------------------------------------------------------------- translation (pure)
def test_sampling_kwargs_by_hand() -> None:
    sampling = SamplingParams(temperature=0.7, top_p=0.9, top_k=20, max_new_tokens=5, stop_strings=("\n\n",), stop_token_ids=(9, 4))
    kwargs = sampling_kwargs(sampling, seed=42, eos_ids=[2, 7], pad_id=0, logprobs_mode="processed")
    assert kwargs == {
        "n": 1, "max_tokens": 5, "temperature": 0.7, "top_p": 0.9, "top_k": 20, "seed": 42, "end_id": 2, "pad_id": 0,
        "stop_token_ids": [4, 7, 9], "stop": ["\n\n"], "include_stop_str_in_output": True, "detokenize": False,
        "logprobs": 1, "logprobs_mode": "processed",
    }
    plain = sampling_kwargs(SamplingParams(logprobs=False), seed=0, eos_ids=[2], pad_id=0, logprobs_mode="processed")
    assert (plain["top_k"], plain["stop_token_ids"], plain["stop"], plain["logprobs"]) == (None, None, None, None)
    assert "logprobs_mode" not in plain
    FakeTrtllmSamplingParams(**kwargs)  # every key is a real SamplingParams field name


def test_engine_kwargs_from_policy_and_options() -> None:
    policy = PolicyConfig(model_name="/m", precision="bfloat16", max_total_sequence_length=300)
    kwargs = engine_kwargs(policy, TrtllmConfig(tensor_parallel_size=2, free_gpu_memory_fraction=0.3, max_batch_size=64))
    assert (kwargs["model"], kwargs["dtype"], kwargs["max_seq_len"], kwargs["tensor_parallel_size"]) == ("/m", "bfloat16", 300, 2)
    assert kwargs["kv_cache_config"] == {"free_gpu_memory_fraction": 0.3, "enable_block_reuse": True}
    assert kwargs["orchestrator_type"] == "ray"
    assert kwargs["ray_worker_extension_cls"] == "tensorrt_llm.llmapi.rlhf_utils.WorkerExtension"
    assert kwargs["cuda_graph_config"] is None and kwargs["sleep_config"] == {} and kwargs["max_batch_size"] == 64
    old = engine_kwargs(policy, TrtllmConfig(sleep_mode="enable_sleep", cuda_graphs=True))
    assert old["enable_sleep"] is True and "sleep_config" not in old and "cuda_graph_config" not in old
    assert "enable_sleep" not in engine_kwargs(policy, TrtllmConfig(sleep_mode="off"))
    with pytest.raises(ReinforgeError, match="max_seq_len"):
        engine_kwargs(policy, TrtllmConfig(extra_engine_args={"max_seq_len": 8}))


def test_output_conversion_finish_reasons_and_logprob_alignment() -> None:
    out = completion_from_output(FakeCompletionOutput(0, "", [5, 6], [{5: Logprob(-0.5, 1)}, {6: Logprob(-2.0, 3), 1: Logprob(-0.1, 1)}], "stop", None))
    assert (out.response, out.logprobs, out.truncated) == ([5, 6], [-0.5, -2.0], False)
    floats = completion_from_output(FakeCompletionOutput(0, "", [5], [-0.25], "length", None))  # older releases: bare floats
    assert (floats.logprobs, floats.truncated) == ([-0.25], True)
    none = completion_from_output(FakeCompletionOutput(0, "", [5, 6], None, "length", None))
    assert none.logprobs == [0.0, 0.0]
    with pytest.raises(RuntimeError, match="2 logprobs for 1 tokens"):
        completion_from_output(FakeCompletionOutput(0, "", [5], [-1.0, -1.0], "stop", None))
    with pytest.raises(ReinforgeError, match="cancelled"):
        completion_from_output(FakeCompletionOutput(0, "", [], None, "cancelled", None))


def test_cut_at_stop_strings_by_hand() -> None:
    pieces = {1: "ab", 2: "c\n", 3: "\nd", 4: "e"}
    decode = lambda ids: "".join(pieces[i] for i in ids)  # noqa: E731
    assert cut_at_stop_strings([1, 2, 3, 4], ["\n\n"], decode) == 3  # "abc\n" + "\nd": the match completes at token 3
    assert cut_at_stop_strings([1, 2, 3, 4], ["b"], decode) == 1
    assert cut_at_stop_strings([1, 2, 3, 4], ["zz"], decode) is None
    assert cut_at_stop_strings([1, 2, 3, 4], [], decode) is None


def test_ipc_handles_rebuild_the_bucket() -> None:
    bucket = [("a", torch.arange(6.0).reshape(2, 3)), ("b", torch.ones(4, dtype=torch.bfloat16))]
    handles = ipc_handles(bucket, [None], lambda device: f"uuid-{device}")
    assert list(handles) == ["uuid-None"]
    rebuilt = [(name, func(*args)) for name, (func, args) in handles["uuid-None"]]
    assert [n for n, _ in rebuilt] == ["a", "b"]
    assert all(torch.equal(x, y) for (_, x), (_, y) in zip(bucket, rebuilt, strict=True))


# -------------------------------------------------------------------------- against the fake engine
def test_generate_sends_one_request_per_sample_with_distinct_seeds(backend: TrtllmGenerationBackend) -> None:
    backend.generate(helpers.arithmetic_prompts(backend), SamplingParams(temperature=1.0, max_new_tokens=4, n=2, seed=7))
    name, call = backend.llm.calls[-1]
    assert name == "generate" and call["requests"] == 4
    assert [p["seed"] for p in call["sampling_params"]] == [7, 8, 9, 10]
    assert {p["logprobs_mode"] for p in call["sampling_params"]} == {"processed"}


def test_stop_string_spelled_with_other_tokens_is_still_honoured(backend: TrtllmGenerationBackend) -> None:
    """TensorRT-LLM misses a stop string whose tokens differ from its encoding; the adapter cuts at the text match."""
    sampling = SamplingParams(temperature=1.0, max_new_tokens=12, n=4, seed=5)
    baseline = backend.generate(helpers.arithmetic_prompts(backend), sampling)
    decode = backend.tokenizer.decode
    for row in range(len(baseline)):
        response = baseline["output_ids"][row, int(baseline["prompt_lengths"][row]) : int(baseline["sequence_lengths"][row])].tolist()
        # Two characters straddling a token boundary: their own encoding is not the tokens that spell them here.
        for i in range(1, len(response)):
            left, right = decode(response[:i]), decode(response[: i + 1])
            stop = right[len(left) - 1 : len(left) + 1]
            if left and right.startswith(left) and len(stop) == 2 and stop.isascii() and stop.isprintable() and stop.strip():
                break
        else:
            continue
        break
    else:
        pytest.fail("no sampled response has two printable characters across a token boundary; pick another seed")
    assert backend.tokenizer.encode(stop, add_special_tokens=False) != response[i - 1 : i + 1]
    out = backend.generate(helpers.arithmetic_prompts(backend), attrs.evolve(sampling, stop_strings=(stop,)))
    cut = out["output_ids"][row, int(out["prompt_lengths"][row]) : int(out["sequence_lengths"][row])].tolist()
    assert cut == response[: len(cut)] and len(cut) <= i + 1
    assert stop in decode(cut) and stop not in decode(cut[:-1]) and not bool(out["truncated"][row])


def test_refit_comes_in_buckets_then_one_finalize(tiny_model_dir: Path) -> None:
    options = TrtllmConfig(engine_api=FAKE.engine_api, refit_bucket_mb=1)
    refitted, names = helpers.refit_with_its_own_weights(TrtllmGenerationBackend, tiny_model_dir, options)
    sent = [call for name, call in refitted.llm.calls if name == "update_weights"]
    assert sent[-1] == {"finalize": True}
    assert len(sent) - 1 == refitted.last_refit.buckets
    assert [n for call in sent[:-1] for n in call["names"]] == names
    assert all(call["devices"] == ["CPU-fake"] for call in sent[:-1])
    refitted.shutdown()
    assert refitted.llm is None


def test_refit_with_an_unknown_name_sends_nothing(backend: TrtllmGenerationBackend) -> None:
    misspelled = [("model.norm.weights", torch.zeros(128))]
    match = r"unknown weight 'model.norm.weights' \(did you mean 'model.norm.weight'\?\)"
    helpers.assert_refit_refused_before_sending(backend, backend.llm.calls, misspelled, match)


def test_sleep_and_wake_send_every_memory_tag(backend: TrtllmGenerationBackend) -> None:
    helpers.asleep_refuses_to_generate(backend)
    assert backend.llm.calls[-2:] == [
        ("sleep", {"tags": ["model_weights_main", "kv_cache"]}),
        ("wakeup", {"tags": ["model_weights_main", "kv_cache"]}),
    ]


def test_sleep_mode_off_only_records_the_state(tiny_model_dir: Path) -> None:
    options = TrtllmConfig(engine_api=FAKE.engine_api, sleep_mode="off")
    quiet = TrtllmGenerationBackend(helpers.fake_policy(tiny_model_dir), options)
    quiet.sleep()
    assert quiet.asleep
    quiet.wake()
    assert [name for name, _ in quiet.llm.calls if name in ("sleep", "wakeup")] == []


# -------------------------------------------------------------------------- user errors
def test_missing_tensorrt_llm_names_the_extra(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    helpers.hide_module(monkeypatch, "tensorrt_llm")
    with pytest.raises(ReinforgeError, match=r"pip install 'reinforge\[trtllm\]'"):
        TrtllmGenerationBackend(PolicyConfig(model_name=str(tiny_model_dir)), TrtllmConfig())


def test_temperature_without_logprobs_mode_is_refused(tiny_model_dir: Path) -> None:
    """Releases without SamplingParams.logprobs_mode report raw logprobs, which ignore temperature."""

    @dataclasses.dataclass(kw_only=True)
    class OldSamplingParams:
        n: int = 1
        max_tokens: int = 32

    old_api = types.SimpleNamespace(**{**vars(TRTLLM_API), "SamplingParams": OldSamplingParams})
    old = TrtllmGenerationBackend(helpers.fake_policy(tiny_model_dir), FAKE, engine_api=old_api)
    with pytest.raises(ReinforgeError, match="logprobs_mode"):
        old.generate(helpers.arithmetic_prompts(old), SamplingParams(temperature=0.7, max_new_tokens=2))


def test_bad_configs_are_reported_with_their_path() -> None:
    with pytest.raises(ReinforgeError) as info:
        structure({"free_gpu_memory_fraction": 0, "sleep_mode": "deep", "logprobs_mode": "raw"}, TrtllmConfig)
    text = str(info.value)
    assert "free_gpu_memory_fraction" in text and "sleep_mode" in text and "logprobs_mode" not in text


def test_registry_lists_trtllm_with_its_extra() -> None:
    helpers.assert_listed_with_its_extra("trtllm", TrtllmConfig, "tensorrt_llm")
