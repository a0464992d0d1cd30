"""The `sglang` backend on CPU, driving `FakeSglangEngine` (a stand-in: SGLang itself needs a GPU).

What this proves: the adapter's translation of sampling parameters, its output -> Batch
conversion, bucketed refit, sleep/wake calls and error handling, with real tokens and logprobs
from the tiny model. What it cannot prove: that the real SGLang accepts these calls
(tests/gpu/test_engines_gpu.py does, on a GPU; not run here).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from reinforge.backends.generation.engine_common import plan_buckets, send_in_buckets
from reinforge.backends.generation.sglang.backend import (
    SglangGenerationBackend,
    completion_from_output,
    engine_kwargs,
    sampling_params_for,
)
from reinforge.backends.generation.sglang.config import SglangConfig
from reinforge.core.config import structure
from reinforge.core.errors import ReinforgeError
from reinforge.core.run_config import PolicyConfig
from reinforge.core.sampling import SamplingParams
from reinforge.testing.conformance_generation import GenerationBackendConformance
from reinforge.testing.fake_engines import SGLANG_API, FakeSglangEngine
from tests.backends import engine_backend_helpers as helpers

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# skip_tokenizer_init=False so that SGLang itself matches stop strings; the default (True) is covered below.
FAKE = SglangConfig(engine_api="reinforge.testing.fake_engines:SGLANG_API", skip_tokenizer_init=False)


class TestSglangConformance(GenerationBackendConformance):
    """The full conformance suite; SGLang's logprobs are unfiltered (before top-p), so the check runs at top_p=0.8."""

    backend_class = SglangGenerationBackend
    backend_options = FAKE


class TestSglangConformanceWithoutTokenizer(GenerationBackendConformance):
    """skip_tokenizer_init=True: SGLang cannot match stop strings, the adapter cuts responses itself."""

    backend_class = SglangGenerationBackend
    backend_options = SglangConfig(engine_api="reinforge.testing.fake_engines:SGLANG_API", refit_bucket_mb=1)


@pytest.fixture(scope="module")
def backend(tiny_model_dir: Path) -> Iterator[SglangGenerationBackend]:
    yield from helpers.started(SglangGenerationBackend, tiny_model_dir, FAKE)


# -------------------------------------------------------------------------- translation (pure)
def test_sampling_params_translation_by_hand() -> None:
    sampling = SamplingParams(temperature=0.7, top_p=0.9, top_k=None, max_new_tokens=5, n=2, stop_strings=("\n\n",), stop_token_ids=(9,))
    params = sampling_params_for(sampling, seeds=[10, 11, 12, 13], options=SglangConfig(skip_tokenizer_init=False))
    assert params[0] == {
        "n": 1, "max_new_tokens": 5, "temperature": 0.7, "top_p": 0.9, "top_k": -1, "stop_token_ids": [9],
        "sampling_seed": 10, "no_stop_trim": True, "skip_special_tokens": False, "stop": ["\n\n"],
    }
    assert [p["sampling_seed"] for p in params] == [10, 11, 12, 13]
    # Without its tokenizer SGLang rejects `stop`; the adapter keeps it to itself.
    assert "stop" not in sampling_params_for(sampling, seeds=[0], options=SglangConfig(skip_tokenizer_init=True))[0]
    greedy = sampling_params_for(SamplingParams(temperature=0, top_k=3), seeds=[0], options=SglangConfig())[0]
    assert (greedy["temperature"], greedy["top_k"], greedy["stop_token_ids"]) == (0, 3, None)


def test_engine_kwargs_from_policy_and_options() -> None:
    policy = PolicyConfig(model_name="/m", precision="bfloat16", max_total_sequence_length=300)
    kwargs = engine_kwargs(policy, SglangConfig(tp_size=2, enable_prefix_caching=False, extra_engine_args={"attention_backend": "fa3"}), seed=5)
    assert kwargs["model_path"] == kwargs["tokenizer_path"] == "/m"
    assert (kwargs["dtype"], kwargs["context_length"], kwargs["tp_size"], kwargs["random_seed"]) == ("bfloat16", 300, 2, 5)
    assert kwargs["disable_radix_cache"] is True and kwargs["skip_tokenizer_init"] is True
    assert kwargs["enable_memory_saver"] is True and kwargs["enable_weights_cpu_backup"] is True
    assert kwargs["attention_backend"] == "fa3"
    no_saver = engine_kwargs(policy, SglangConfig(enable_memory_saver=False, context_length=128), seed=0)
    assert "enable_weights_cpu_backup" not in no_saver and no_saver["context_length"] == 128


def test_extra_engine_args_may_not_override_derived_ones() -> None:
    with pytest.raises(ReinforgeError, match="tp_size"):
        engine_kwargs(PolicyConfig(model_name="/m"), SglangConfig(extra_engine_args={"tp_size": 4}), seed=0)


def test_output_conversion_finish_reasons_and_logprob_alignment() -> None:
    stopped = completion_from_output({
        "output_ids": [5, 6, 2],
        "meta_info": {"finish_reason": {"type": "stop", "matched": 2}, "output_token_logprobs": [(-0.5, 5, None), (-1.25, 6, None), (-0.125, 2, None)]},
    })
    assert (stopped.response, stopped.logprobs, stopped.truncated) == ([5, 6, 2], [-0.5, -1.25, -0.125], False)
    cut = completion_from_output({"output_ids": [7], "meta_info": {"finish_reason": {"type": "length", "length": 1}}})
    assert (cut.logprobs, cut.truncated) == ([0.0], True)
    with pytest.raises(RuntimeError, match="do not follow"):
        completion_from_output({"output_ids": [1, 2], "meta_info": {"finish_reason": {"type": "stop"}, "output_token_logprobs": [(-1.0, 2, None), (-1.0, 1, None)]}})
    with pytest.raises(ReinforgeError, match="aborted"):
        completion_from_output({"output_ids": [], "meta_info": {"finish_reason": {"type": "abort", "message": "oom"}}})


def test_bucket_planning_by_hand() -> None:
    assert plan_buckets([4, 4, 4, 4], bucket_bytes=8) == [[0, 1], [2, 3]]
    assert plan_buckets([3, 10, 2, 2, 5], bucket_bytes=8) == [[0], [1], [2, 3], [4]]  # an oversized tensor travels alone
    assert plan_buckets([], bucket_bytes=8) == []


def test_send_in_buckets_sends_in_order_then_finishes_once(monkeypatch: pytest.MonkeyPatch) -> None:
    weights = [(f"w{i}", torch.zeros(n, dtype=torch.float32)) for i, n in enumerate([1, 1, 3, 1])]  # 4, 4, 12, 4 bytes
    now = [100.0]  # a clock that moves only when the engine works: 0.25 s a bucket, 0.5 s to finish
    monkeypatch.setattr(time, "perf_counter", lambda: now[0])
    events: list[object] = []

    def send(bucket: list[tuple[str, torch.Tensor]]) -> None:
        events.append([name for name, _ in bucket])
        now[0] += 0.25

    def finish() -> None:
        events.append("finish")
        now[0] += 0.5

    record = send_in_buckets(weights, 8, send, finish)
    assert events == [["w0", "w1"], ["w2"], ["w3"], "finish"]
    assert (record.buckets, record.bytes) == (3, 24)
    assert record.seconds == 3 * 0.25 + 0.5  # every send and the finish, nothing else
    assert record.gb_per_s == pytest.approx(24 / 1e9 / 1.25)


# -------------------------------------------------------------------------- against the fake engine
def test_the_engine_is_started_with_the_translated_arguments(backend: SglangGenerationBackend) -> None:
    name, kwargs = backend.engine.calls[0]
    assert name == "__init__"
    assert kwargs["random_seed"] == 0 and kwargs["skip_tokenizer_init"] is False and kwargs["context_length"] == 96


def test_generate_sends_one_request_per_sample_with_distinct_seeds(backend: SglangGenerationBackend) -> None:
    backend.generate(helpers.arithmetic_prompts(backend), SamplingParams(temperature=1.0, max_new_tokens=4, n=3, seed=100))
    name, call = backend.engine.calls[-1]
    assert name == "generate" and call["requests"] == 6 and call["return_logprob"] is True
    assert [p["sampling_seed"] for p in call["sampling_params"]] == list(range(100, 106))
    assert {p["n"] for p in call["sampling_params"]} == {1}


def test_refit_comes_in_buckets_then_one_cache_flush(tiny_model_dir: Path) -> None:
    options = SglangConfig(engine_api=FAKE.engine_api, refit_bucket_mb=1)
    refitted, names = helpers.refit_with_its_own_weights(SglangGenerationBackend, tiny_model_dir, options)
    sent = [c for c in refitted.engine.calls if c[0] == "update_weights_from_tensor"]
    assert len(sent) == refitted.last_refit.buckets
    assert all(call["flush_cache"] is False for _, call in sent)
    assert [n for _, call in sent for n in call["names"]] == names
    assert refitted.engine.calls[-1][0] == "flush_cache"
    refitted.shutdown()
    assert refitted.engine is None


def test_refit_with_a_wrong_shape_sends_nothing(backend: SglangGenerationBackend) -> None:
    wrong_shape = [("model.norm.weight", torch.zeros(3))]
    match = r"'model.norm.weight' has shape \(3,\)"
    helpers.assert_refit_refused_before_sending(backend, backend.engine.calls, wrong_shape, match)


def test_sleep_and_wake_release_and_resume(backend: SglangGenerationBackend) -> None:
    backend.sleep()
    helpers.asleep_refuses_to_generate(backend)  # sleeps again: idempotent, released once
    names = [c[0] for c in backend.engine.calls]
    assert names.count("release_memory_occupation") == names.count("resume_memory_occupation") >= 1
    assert backend.generate(helpers.arithmetic_prompts(backend), helpers.GREEDY)["generation_lengths"].min() >= 1


def test_update_weights_from_distributed_checks_names_first(backend: SglangGenerationBackend) -> None:
    with pytest.raises(ReinforgeError, match="no_such.weight"):
        backend.update_weights_from_distributed([("no_such.weight", torch.float32, (2,))])
    backend.update_weights_from_distributed([("model.norm.weight", torch.bfloat16, (128,))])
    assert backend.engine.calls[-1] == (
        "update_weights_from_distributed", {"names": ["model.norm.weight"], "dtypes": ["bfloat16"], "shapes": [[128]]}
    )


def test_engine_side_refit_failure_is_a_user_error(backend: SglangGenerationBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend.engine, "update_weights_from_tensor", lambda **_: (False, "shape mismatch on rank 1"))
    with pytest.raises(ReinforgeError, match="rank 1"):
        backend.update_weights([("model.norm.weight", torch.ones(128))])


# -------------------------------------------------------------------------- user errors
def test_missing_sglang_names_the_extra(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    helpers.hide_module(monkeypatch, "sglang")
    with pytest.raises(ReinforgeError, match=r"pip install 'reinforge\[sglang\]'"):
        SglangGenerationBackend(PolicyConfig(model_name=str(tiny_model_dir)), SglangConfig())


def test_original_logprobs_env_is_refused(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SGLANG_RETURN_ORIGINAL_LOGPROB", "True")
    with pytest.raises(ReinforgeError, match="unset it"):
        SglangGenerationBackend(PolicyConfig(model_name=str(tiny_model_dir)), FAKE, engine_api=SGLANG_API)


def test_missing_model_folder(tmp_path: Path) -> None:
    with pytest.raises(ReinforgeError, match="does not exist"):
        SglangGenerationBackend(PolicyConfig(model_name=str(tmp_path / "nope")), FAKE)


def test_bad_configs_are_reported_with_their_path() -> None:
    with pytest.raises(ReinforgeError) as info:
        structure({"mem_fraction_static": 1.5, "refit_bucket_mb": 0, "tp_sise": 2}, SglangConfig)
    text = str(info.value)
    assert "mem_fraction_static" in text and "refit_bucket_mb" in text and "tp_sise" in text


def test_registry_lists_sglang_with_its_extra() -> None:
    helpers.assert_listed_with_its_extra("sglang", SglangConfig, "sglang")


def test_the_fake_says_it_is_a_fake() -> None:
    import reinforge.testing.fake_engines as fakes

    assert "FAKES, NOT THE ENGINES" in fakes.__doc__ and FakeSglangEngine.__doc__.startswith("A stand-in")
