"""The `trtllm` generation backend: TensorRT-LLM's `LLM` API (PyTorch backend) driven with token ids.

Written against `from tensorrt_llm import LLM, SamplingParams` (tensorrt_llm/llmapi/llm.py,
tensorrt_llm/sampling_params.py): prompts go in as `{"prompt_token_ids": [...]}`, each result's
`outputs[0]` carries `token_ids`, `logprobs` (one `{token_id: Logprob}` per token) and
`finish_reason` ("length", "stop", ...).

Refit (unverified on GPU here): TensorRT-LLM has no public weight-update method on `LLM`. RL
frameworks start it with `orchestrator_type="ray"` and the worker extension
`tensorrt_llm.llmapi.rlhf_utils.WorkerExtension`, then call
`llm._collective_rpc("update_weights", (ipc_handles,))` once per bucket, where `ipc_handles` maps
each worker's device UUID to `[(hf_name, torch.multiprocessing.reductions.reduce_tensor(t))]`,
and once more with `None` to finalise (post-load hooks, prefix-cache reset). That private
`_collective_rpc` path is what this adapter uses.

Sleep/wake: `sleep_config=SleepConfig()` (newer releases) or `enable_sleep=True` (older), then
`llm._collective_rpc("sleep", (tags,))` / `("wakeup", (tags,))` with every `ExecutorMemoryType`.
With `sleep_mode: off` they are documented no-ops that only record the state.

TensorRT-LLM needs an NVIDIA GPU. On this project's CPU machines the adapter runs only against
`reinforge.testing.fake_engines.FakeTrtllmLLM`, a stand-in with the same methods backed by a
Hugging Face model; tests/gpu/test_engines_gpu.py exercises the real engine and has not been run here.

Stop strings: TensorRT-LLM matches them as token sequences (the encoded string), so a stop that
the model spells with other tokens is missed; the adapter also cuts each response at the first
text match, which is what the interface promises.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any

import torch

from reinforge.backends.generation.engine_common import (
    Completion,
    RefitRecord,
    apply_stop_strings,
    assemble_batch,
    check_model_folder,
    check_weights,
    checkpoint_shapes,
    eos_token_ids,
    load_engine_api,
    prompt_lists,
    sample_seeds,
    send_in_buckets,
)
from reinforge.backends.generation.trtllm.config import TrtllmConfig
from reinforge.core.batch import Batch
from reinforge.core.errors import ReinforgeError
from reinforge.core.model_config import ModelConfig
from reinforge.core.run_config import GenerationConfig
from reinforge.core.sampling import SamplingParams

_BACKEND = "trtllm"


class TrtllmGenerationBackend:
    """Implements `GenerationBackend` over one TensorRT-LLM `LLM` (see the module docstring)."""

    def __init__(
        self, model_config: ModelConfig, options: TrtllmConfig | None = None, *, generation: GenerationConfig | None = None, seed: int = 0, engine_api: Any = None
    ) -> None:
        self.model_config = model_config
        self.sampling_defaults = generation  # the run's sampling defaults; each call brings its own SamplingParams
        self.options = options or TrtllmConfig()
        self.seed = seed
        self._calls = 0
        self.asleep = False
        self.last_refit = RefitRecord()
        self.on_gpu = torch.cuda.is_available()
        check_model_folder(model_config.model_name)
        # `engine_api` (an object with `LLM` and `SamplingParams`) lets tests inject a stand-in.
        self.api = engine_api if engine_api is not None else load_engine_api(self.options.engine_api, backend=_BACKEND, extra="trtllm")
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_config.tokenizer_name or model_config.model_name)
        self.eos_token_ids = eos_token_ids(model_config.model_name, self.tokenizer)
        if not self.eos_token_ids:
            raise ReinforgeError(f"'{model_config.model_name}' defines no eos token (tokenizer, config.json or generation_config.json)")
        self.pad_token_id = int(self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_token_ids[0])
        self.llm = self.api.LLM(**engine_kwargs(model_config, self.options))
        self.weight_shapes = checkpoint_shapes(model_config.model_name)
        self._logprobs_mode_supported = _has_field(self.api.SamplingParams, "logprobs_mode")

    # ------------------------------------------------------------------ generation
    def generate(self, batch: Batch, sampling: SamplingParams) -> Batch:
        if self.llm is None:
            raise ReinforgeError("the trtllm backend was shut down; build a new one")
        if self.asleep:
            raise ReinforgeError("the trtllm engine is asleep; call wake() before generate()")
        prompts = prompt_lists(batch, sampling, self.model_config.max_total_sequence_length, backend=_BACKEND)
        if sampling.logprobs and not self._logprobs_mode_supported and sampling.temperature not in (0, 1):
            raise ReinforgeError(
                f"this TensorRT-LLM has no SamplingParams.logprobs_mode, so its logprobs ignore temperature "
                f"({sampling.temperature}) and would not match the trainer's; upgrade tensorrt-llm or sample at temperature 1."
            )
        base_seed = sampling.seed if sampling.seed is not None else self.seed * 1_000_003 + self._calls
        self._calls += 1
        # Each prompt goes in n times with n=1: every sample has its own seed, and greedy n>1 (refused by the
        # LLM API) needs no special case.
        kwargs = [
            sampling_kwargs(sampling, seed, self.eos_token_ids, self.pad_token_id, self.options.logprobs_mode if self._logprobs_mode_supported else None)
            for seed in sample_seeds(base_seed, len(prompts), sampling.n)
        ]
        requests = [{"prompt_token_ids": prompt} for prompt in prompts for _ in range(sampling.n)]
        outputs = self.llm.generate(requests, [self.api.SamplingParams(**k) for k in kwargs], use_tqdm=False)
        completions = [
            apply_stop_strings(completion_from_output(result.outputs[0]), sampling.stop_strings, self.tokenizer.decode)
            for result in outputs
        ]
        return assemble_batch(batch, prompts, completions, sampling.n, self.pad_token_id)

    # ------------------------------------------------------------------ refit
    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Send Hugging Face-named tensors as CUDA IPC handles, `refit_bucket_mb` at a time, then finalise once."""
        if self.llm is None:
            raise ReinforgeError("the trtllm backend was shut down; build a new one")
        weights = [(name, tensor.detach()) for name, tensor in named_tensors]
        if not weights:
            return
        check_weights(weights, self.weight_shapes, backend=_BACKEND)
        devices = list(range(self.options.tensor_parallel_size)) if self.on_gpu else [None]
        uuid_of = _device_uuid_function(self.api)
        llm = self.llm
        self.last_refit = send_in_buckets(
            weights, self.options.refit_bucket_mb * 2**20,
            lambda bucket: llm._collective_rpc("update_weights", (ipc_handles(bucket, devices, uuid_of),)),
            lambda: llm._collective_rpc("update_weights", (None,)),  # finalise: post-load hooks, prefix-cache reset
        )

    # ------------------------------------------------------------------ memory
    def sleep(self) -> None:
        """Release weights and KV cache (TensorRT-LLM sleep API); with sleep_mode off, only record the state."""
        if self.options.sleep_mode != "off" and not self.asleep and self.llm is not None:
            self.llm._collective_rpc("sleep", (_memory_tags(self.api),))
        self.asleep = True

    def wake(self) -> None:
        if self.options.sleep_mode != "off" and self.asleep and self.llm is not None:
            self.llm._collective_rpc("wakeup", (_memory_tags(self.api),))
        self.asleep = False

    def shutdown(self) -> None:
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            llm.shutdown()


# ---------------------------------------------------------------------- pure translations (unit-tested)
def engine_kwargs(model_config: ModelConfig, options: TrtllmConfig) -> dict[str, Any]:
    """Arguments of `tensorrt_llm.LLM(...)` for this policy and these options (pydantic coerces the dicts)."""
    kwargs: dict[str, Any] = {
        "model": model_config.model_name,
        "tokenizer": model_config.tokenizer_name or model_config.model_name,
        "dtype": model_config.precision if options.dtype == "auto" else options.dtype,
        "tensor_parallel_size": options.tensor_parallel_size,
        "max_seq_len": options.max_seq_len or model_config.max_total_sequence_length,
        "kv_cache_config": {
            "free_gpu_memory_fraction": options.free_gpu_memory_fraction,
            "enable_block_reuse": options.enable_block_reuse,
        },
        "orchestrator_type": options.orchestrator_type,
        "ray_worker_extension_cls": options.worker_extension_cls,
    }
    if not options.cuda_graphs:
        kwargs["cuda_graph_config"] = None
    if options.max_batch_size is not None:
        kwargs["max_batch_size"] = options.max_batch_size
    if options.sleep_mode == "sleep_config":
        kwargs["sleep_config"] = {}
    elif options.sleep_mode == "enable_sleep":
        kwargs["enable_sleep"] = True
    clash = sorted(set(kwargs) & set(options.extra_engine_args))
    if clash:
        raise ReinforgeError(
            f"trtllm extra_engine_args sets {', '.join(clash)}, which the backend derives from the policy and its own "
            "options; set the matching option (e.g. tensor_parallel_size, max_seq_len, dtype) instead."
        )
    return {**kwargs, **options.extra_engine_args}


def sampling_kwargs(
    sampling: SamplingParams, seed: int, eos_ids: list[int], pad_id: int, logprobs_mode: str | None
) -> dict[str, Any]:
    """Keyword arguments of `tensorrt_llm.SamplingParams` for one sample (n=1)."""
    stops = sorted(set(sampling.stop_token_ids) | set(eos_ids[1:]))  # one end_id; any other eos is a stop token
    kwargs: dict[str, Any] = {
        "n": 1,
        "max_tokens": sampling.max_new_tokens,
        "temperature": sampling.temperature,  # 0 means greedy in the LLM API
        "top_p": sampling.top_p,
        "top_k": sampling.top_k,  # None: all tokens
        "seed": seed,
        "end_id": eos_ids[0],
        "pad_id": pad_id,
        "stop_token_ids": stops or None,
        "stop": list(sampling.stop_strings) or None,
        "include_stop_str_in_output": True,  # otherwise the stop tokens are cut from token_ids
        "detokenize": False,
        "logprobs": 1 if sampling.logprobs else None,  # 0 would mean "none": the API tests it for truth
    }
    if logprobs_mode is not None and sampling.logprobs:
        kwargs["logprobs_mode"] = logprobs_mode
    return kwargs


def completion_from_output(output: Any) -> Completion:
    """Response ids, per-token logprobs and the truncated flag from one TensorRT-LLM `CompletionOutput`."""
    reason = getattr(output, "finish_reason", None)
    if reason in ("cancelled", "timeout"):
        raise ReinforgeError(f"tensorrt-llm ended a request with finish_reason={reason!r}; see the engine's log")
    response = [int(t) for t in output.token_ids]
    steps = getattr(output, "logprobs", None)
    if not steps:
        logprobs = [0.0] * len(response)
    else:
        if len(steps) != len(response):
            raise RuntimeError(f"tensorrt-llm returned {len(steps)} logprobs for {len(response)} tokens")
        logprobs = []
        for token, step in zip(response, steps, strict=True):
            # Top-k logprob dicts {token_id: Logprob} (current releases) or bare floats (older ones).
            logprobs.append(float(step[token].logprob) if isinstance(step, dict) else float(step))
    return Completion(response=response, logprobs=logprobs, truncated=reason == "length")


def ipc_handles(
    bucket: list[tuple[str, torch.Tensor]], devices: list[int | None], uuid_of: Any
) -> dict[str, list[tuple[str, Any]]]:
    """`{device_uuid: [(name, reduce_tensor(tensor on that device))]}`, the payload WorkerExtension.update_weights reads.

    Every worker of a tensor-parallel engine rebuilds the full tensors from its own device (it
    slices its shard itself), so each device gets its own copy; `None` is the CPU (stand-in engine).
    """
    from torch.multiprocessing.reductions import reduce_tensor

    out = {}
    for device in devices:
        target = f"cuda:{device}" if device is not None else "cpu"
        out[uuid_of(device)] = [(name, reduce_tensor(tensor.to(target).contiguous())) for name, tensor in bucket]
    return out


def _device_uuid_function(api: Any) -> Any:
    helper = getattr(api, "get_device_uuid", None)
    if helper is None:
        helper = importlib.import_module("tensorrt_llm._torch.utils").get_device_uuid
    return helper


def _memory_tags(api: Any) -> list[Any]:
    """Every memory kind the executor can release (weights, KV cache, ...), from the engine's own enum."""
    enum = getattr(api, "ExecutorMemoryType", None)
    for module in ("tensorrt_llm.llmapi.llm_args", "tensorrt_llm._torch.virtual_memory"):
        if enum is not None:
            break
        try:
            enum = importlib.import_module(module).ExecutorMemoryType
        except (ImportError, AttributeError):
            continue
    if enum is None:
        raise ReinforgeError("this tensorrt-llm has no ExecutorMemoryType, so it cannot sleep; set sleep_mode: off")
    return list(enum)


def _has_field(cls: Any, name: str) -> bool:
    fields = getattr(cls, "__dataclass_fields__", None) or getattr(cls, "model_fields", None) or {}
    return name in fields
