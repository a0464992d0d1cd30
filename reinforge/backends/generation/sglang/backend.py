"""The `sglang` generation backend: SGLang's offline `Engine` driven with token ids.

Written against SGLang's Python API (`sglang.Engine`, python/sglang/srt/entrypoints/engine.py):
`generate(input_ids=..., sampling_params=[...], return_logprob=True)` returns one dict per
request, `{"output_ids", "meta_info": {"output_token_logprobs": [(logprob, id, text)],
"finish_reason": {"type": "length" | "stop" | "abort", ...}}}`; refit goes through
`update_weights_from_tensor` (one call per bucket, then `flush_cache()`); sleep and wake
through `release_memory_occupation()` / `resume_memory_occupation()` (torch_memory_saver).

SGLang needs an NVIDIA GPU. On this project's CPU machines the adapter runs only against
`reinforge.testing.fake_engines.FakeSglangEngine`, a stand-in with the same methods backed by
a Hugging Face model; the real engine is exercised by tests/gpu/test_engines_gpu.py, which
has not been run here.

Logprobs: SGLang reports log p of each sampled token after temperature scaling and before
top-k/top-p filtering (log of the softmax it samples from), which is what the trainer
computes, unless SGLANG_RETURN_ORIGINAL_LOGPROB is set (then temperature is ignored), so
that variable is refused. Greedy requests (temperature 0) are sampled by SGLang as top_k=1 at
temperature 1, so their logprobs are those of the unscaled logits, as in the `hf` backend.
"""

from __future__ import annotations

import os
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
    load_engine_api,
    prompt_lists,
    sample_seeds,
    send_in_buckets,
)
from reinforge.backends.generation.sglang.config import SglangConfig
from reinforge.core.batch import Batch
from reinforge.core.errors import ReinforgeError
from reinforge.core.model_config import ModelConfig
from reinforge.core.run_config import GenerationConfig
from reinforge.core.sampling import SamplingParams

_BACKEND = "sglang"


class SglangGenerationBackend:
    """Implements `GenerationBackend` over one `sglang.Engine` (see the module docstring)."""

    def __init__(
        self, model_config: ModelConfig, options: SglangConfig | None = None, *, generation: GenerationConfig | None = None, seed: int = 0, engine_api: Any = None
    ) -> None:
        self.model_config = model_config
        self.sampling_defaults = generation  # the run's sampling defaults; each call brings its own SamplingParams
        self.options = options or SglangConfig()
        self.seed = seed
        self._calls = 0
        self.asleep = False
        self.last_refit = RefitRecord()
        self.on_gpu = torch.cuda.is_available()
        check_model_folder(model_config.model_name)
        _refuse_original_logprobs()
        # `engine_api` (an object with `Engine`) lets tests inject a stand-in; by default SGLang is imported here, lazily.
        api = engine_api if engine_api is not None else load_engine_api(self.options.engine_api, backend=_BACKEND, extra="sglang")
        self.engine = api.Engine(**engine_kwargs(model_config, self.options, seed))
        self.tokenizer = _load_tokenizer(model_config)
        self.pad_token_id = _pad_id(self.tokenizer)
        # A failed update leaves the engine half-refitted: names and shapes are checked before anything is sent.
        self.weight_shapes = checkpoint_shapes(model_config.model_name)

    # ------------------------------------------------------------------ generation
    def generate(self, batch: Batch, sampling: SamplingParams) -> Batch:
        if self.engine is None:
            raise ReinforgeError("the sglang backend was shut down; build a new one")
        if self.asleep:
            raise ReinforgeError("the sglang engine is asleep; call wake() before generate()")
        prompts = prompt_lists(batch, sampling, self.model_config.max_total_sequence_length, backend=_BACKEND)
        base_seed = sampling.seed if sampling.seed is not None else self.seed * 1_000_003 + self._calls
        self._calls += 1
        params = sampling_params_for(sampling, sample_seeds(base_seed, len(prompts), sampling.n), self.options)
        # Each prompt is sent n times with n=1 rather than once with n: every sample gets its own seed, and the
        # output order (prompt-major, samples adjacent) does not depend on how SGLang expands parallel sampling.
        requests = [prompt for prompt in prompts for _ in range(sampling.n)]
        outputs = self.engine.generate(input_ids=requests, sampling_params=params, return_logprob=sampling.logprobs)
        if isinstance(outputs, dict):  # a single request comes back unwrapped
            outputs = [outputs]
        completions = [
            apply_stop_strings(completion_from_output(output), sampling.stop_strings, self._decode) for output in outputs
        ]
        return assemble_batch(batch, prompts, completions, sampling.n, self.pad_token_id)

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)

    # ------------------------------------------------------------------ refit
    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Send Hugging Face-named tensors in buckets of `refit_bucket_mb`, then flush the radix cache once."""
        if self.engine is None:
            raise ReinforgeError("the sglang backend was shut down; build a new one")
        weights = [(name, tensor.detach()) for name, tensor in named_tensors]
        if not weights:
            return
        check_weights(weights, self.weight_shapes, backend=_BACKEND)
        device = "cuda" if self.on_gpu else "cpu"

        def send(bucket: list[tuple[str, torch.Tensor]]) -> None:
            # flush_cache=False per bucket: the KV of the old weights is dropped once, after the last one.
            on_device = [(name, tensor.to(device).contiguous()) for name, tensor in bucket]
            _check_result(self.engine.update_weights_from_tensor(named_tensors=on_device, flush_cache=False), "update_weights_from_tensor")

        self.last_refit = send_in_buckets(weights, self.options.refit_bucket_mb * 2**20, send, self.engine.flush_cache)

    def init_weight_update_group(
        self, master_address: str, master_port: int, rank_offset: int, world_size: int, group_name: str = "reinforge_refit"
    ) -> None:
        """Join an NCCL group with the trainer for disaggregated refit (GPU only; not exercised on CPU here)."""
        _check_result(
            self.engine.init_weights_update_group(
                master_address=master_address, master_port=master_port, rank_offset=rank_offset,
                world_size=world_size, group_name=group_name, backend="nccl",
            ),
            "init_weights_update_group",
        )

    def update_weights_from_distributed(
        self, metadata: list[tuple[str, torch.dtype, tuple[int, ...]]], group_name: str = "reinforge_refit"
    ) -> None:
        """Receive tensors the trainer broadcasts over the group from `init_weight_update_group` (GPU only).

        `metadata` lists (name, dtype, shape) in broadcast order; names and shapes are checked first.
        """
        check_weights([(name, torch.empty(shape, device="meta")) for name, _, shape in metadata], self.weight_shapes, backend=_BACKEND)
        _check_result(
            self.engine.update_weights_from_distributed(
                names=[name for name, _, _ in metadata],
                dtypes=[str(dtype).removeprefix("torch.") for _, dtype, _ in metadata],
                shapes=[list(shape) for _, _, shape in metadata],
                group_name=group_name,
                flush_cache=True,
            ),
            "update_weights_from_distributed",
        )

    # ------------------------------------------------------------------ memory
    def sleep(self) -> None:
        """Release weights and KV cache (needs enable_memory_saver; otherwise only the state is recorded)."""
        if self.options.enable_memory_saver and not self.asleep and self.engine is not None:
            self.engine.release_memory_occupation()
        self.asleep = True

    def wake(self) -> None:
        if self.options.enable_memory_saver and self.asleep and self.engine is not None:
            self.engine.resume_memory_occupation()
        self.asleep = False

    def shutdown(self) -> None:
        engine, self.engine = getattr(self, "engine", None), None
        if engine is not None:
            engine.shutdown()


# ---------------------------------------------------------------------- pure translations (unit-tested)
def engine_kwargs(model_config: ModelConfig, options: SglangConfig, seed: int) -> dict[str, Any]:
    """Arguments of `sglang.Engine(...)` (SGLang's ServerArgs) for this policy and these options."""
    kwargs: dict[str, Any] = {
        "model_path": model_config.model_name,
        "tokenizer_path": model_config.tokenizer_name or model_config.model_name,
        "dtype": model_config.precision if options.dtype == "auto" else options.dtype,
        "context_length": options.context_length or model_config.max_total_sequence_length,
        "mem_fraction_static": options.mem_fraction_static,
        "tp_size": options.tp_size,
        "random_seed": seed,
        "skip_tokenizer_init": options.skip_tokenizer_init,
        "disable_radix_cache": not options.enable_prefix_caching,
        "disable_cuda_graph": options.disable_cuda_graph,
        "enable_memory_saver": options.enable_memory_saver,
        "log_level": "error",
    }
    if options.enable_memory_saver:
        kwargs["enable_weights_cpu_backup"] = options.weights_cpu_backup
    if options.deterministic_inference:
        kwargs["enable_deterministic_inference"] = True
    clash = sorted(set(kwargs) & set(options.extra_engine_args))
    if clash:
        raise ReinforgeError(
            f"sglang extra_engine_args sets {', '.join(clash)}, which the backend derives from the policy and its own "
            "options; set the matching option (e.g. tp_size, context_length, dtype) instead."
        )
    return {**kwargs, **options.extra_engine_args}


def sampling_params_for(sampling: SamplingParams, seeds: list[int], options: SglangConfig) -> list[dict[str, Any]]:
    """One SGLang sampling-params dict per sample (n=1 each; samples of one prompt adjacent)."""
    params = []
    for seed in seeds:
        p: dict[str, Any] = {
            "n": 1,
            "max_new_tokens": sampling.max_new_tokens,
            "temperature": sampling.temperature,  # 0: SGLang switches to top_k=1 (greedy)
            "top_p": sampling.top_p,
            "top_k": sampling.top_k if sampling.top_k is not None else -1,  # -1: whole vocabulary
            "stop_token_ids": list(sampling.stop_token_ids) or None,
            "sampling_seed": seed,
            "no_stop_trim": True,  # the stop string stays in the text, as it stays in the ids
            "skip_special_tokens": False,
        }
        if sampling.stop_strings and not options.skip_tokenizer_init:
            # Without its tokenizer SGLang refuses stop strings; they are then matched after generation instead.
            p["stop"] = list(sampling.stop_strings)
        params.append(p)
    return params


def completion_from_output(output: dict[str, Any]) -> Completion:
    """Response ids, per-token logprobs and the truncated flag from one SGLang output dict."""
    meta = output.get("meta_info", {})
    reason = meta.get("finish_reason") or {}
    kind = reason.get("type") if isinstance(reason, dict) else str(reason)
    if kind == "abort":
        raise ReinforgeError(f"sglang aborted a request: {reason.get('message', reason)}; see the engine's log")
    token_logprobs = meta.get("output_token_logprobs")  # [(logprob, token_id, text or None), ...] when requested
    response = list(output["output_ids"]) if "output_ids" in output else [int(t[1]) for t in token_logprobs or []]
    if token_logprobs is None:
        logprobs = [0.0] * len(response)
    else:
        if [int(t[1]) for t in token_logprobs] != response:
            raise RuntimeError("sglang's output_token_logprobs do not follow output_ids")
        logprobs = [float(t[0]) for t in token_logprobs]
    return Completion(response=response, logprobs=logprobs, truncated=kind == "length")


def _check_result(result: Any, what: str) -> None:
    """SGLang's control calls answer (success, message); a False is an engine-side failure."""
    if isinstance(result, tuple) and result and result[0] is False:
        raise ReinforgeError(f"sglang {what} failed: {result[1] if len(result) > 1 else 'no message'}")


def _refuse_original_logprobs() -> None:
    if os.environ.get("SGLANG_RETURN_ORIGINAL_LOGPROB", "").lower() in ("1", "true", "yes"):
        raise ReinforgeError(
            "SGLANG_RETURN_ORIGINAL_LOGPROB is set: SGLang would report logprobs before temperature scaling, which "
            "the trainer's logprobs (logits / temperature) would not match; unset it for the sglang backend."
        )


def _load_tokenizer(model_config: ModelConfig) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_config.tokenizer_name or model_config.model_name)


def _pad_id(tokenizer: Any) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise ReinforgeError("the tokenizer defines neither a pad nor an eos token; set pad_token in its tokenizer_config.json.")
    return int(pad)
