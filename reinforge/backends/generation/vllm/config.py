"""Options of the `vllm` generation backend (light: imports only attrs)."""

from __future__ import annotations

from typing import Literal

import attrs
from attrs import validators as v

from reinforge.core.config import doc


@attrs.define(kw_only=True, frozen=True)
class VllmConfig:
    tensor_parallel_size: int = doc("GPUs per engine replica", default=1, validator=v.gt(0))
    gpu_memory_utilization: float = doc("share of GPU memory vLLM may take (weights + KV cache)", default=0.6, validator=[v.gt(0), v.le(1)])
    kv_cache_space_gb: float = doc("CPU only: GiB of KV cache (VLLM_CPU_KVCACHE_SPACE); the default would take most of RAM", default=1.0, validator=v.gt(0))
    max_model_len: int | None = doc("longest prompt + response (null: policy.max_total_sequence_length)", default=None, validator=v.optional(v.gt(0)))
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = doc("engine dtype (auto: policy.precision)", default="auto")
    enforce_eager: bool = doc("no CUDA graphs / torch.compile (train/inference logprob agreement, fast start)", default=True)
    enable_prefix_caching: bool = doc("reuse KV cache across prompts sharing a prefix", default=True)
    in_process: bool = doc("run the engine core in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0): starts in seconds, refit by direct call", default=True)
    async_engine: bool = doc(
        "use vLLM's AsyncLLM engine: generate() is unchanged, and generate_stream() yields each sample as it finishes; "
        "its engine core always runs in a separate process (in_process does not apply), which adds ~20 s to start on CPU",
        default=False,
    )
    group_identical_prompts: bool = doc(
        "send adjacent identical prompts (GRPO's G copies of a prompt) as one request with n = copies instead of one "
        "request each: vLLM prefills the prompt once and fans the samples out itself. Outputs keep their rows and "
        "per-row seeds (vLLM seeds sample i of a request with seed + i, exactly the seed the row would get); "
        "applies when sampling.n is 1 (the rollout service's case)",
        default=False,
    )
    max_num_seqs: int | None = doc("sequences scheduled at once (null: vLLM's default)", default=None, validator=v.optional(v.gt(0)))
