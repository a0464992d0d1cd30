"""Options of the `trtllm` generation backend (light: imports only attrs)."""

from __future__ import annotations

from typing import Any, Literal

import attrs
from attrs import validators as v

from reinforge.core.config import doc


@attrs.define(kw_only=True, frozen=True)
class TrtllmConfig:
    """How the `trtllm` backend starts TensorRT-LLM's `LLM` (PyTorch backend); sampling comes from `SamplingParams`."""

    tensor_parallel_size: int = doc("GPUs per engine replica", default=1, validator=v.gt(0))
    free_gpu_memory_fraction: float = doc(
        "share of the GPU memory left after loading the weights that the KV cache may take",
        default=0.5,
        validator=[v.gt(0), v.le(1)],
    )
    max_seq_len: int | None = doc(
        "longest prompt + response (null: policy.max_total_sequence_length)", default=None, validator=v.optional(v.gt(0))
    )
    max_batch_size: int | None = doc("requests scheduled at once (null: TensorRT-LLM's default)", default=None, validator=v.optional(v.gt(0)))
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = doc("engine dtype (auto: policy.precision)", default="auto")
    enable_block_reuse: bool = doc("KV-cache block reuse across prompts sharing a prefix", default=True)
    cuda_graphs: bool = doc("capture CUDA graphs for decoding (false: eager, faster start)", default=False)
    logprobs_mode: Literal["processed", "raw"] = doc(
        "processed: logprobs after temperature (and top-k/top-p), as the trainer computes them; raw: of the model's "
        "logits (only equal at temperature 1)",
        default="processed",
    )
    sleep_mode: Literal["sleep_config", "enable_sleep", "off"] = doc(
        "how to turn on TensorRT-LLM's memory release for sleep()/wake(): sleep_config (newer releases, "
        "sleep_config=SleepConfig()), enable_sleep (releases with enable_sleep=True), off (sleep/wake only mark the state)",
        default="sleep_config",
    )
    orchestrator_type: Literal["ray", "mpi"] = doc(
        "TensorRT-LLM worker orchestration; refit's worker extension needs ray", default="ray"
    )
    worker_extension_cls: str = doc(
        "worker extension providing update_weights(ipc_handles) for refit",
        default="tensorrt_llm.llmapi.rlhf_utils.WorkerExtension",
    )
    refit_bucket_mb: int = doc("MiB of weights per update_weights RPC", default=512, validator=v.gt(0))
    engine_api: str = doc(
        "import path of the engine package, 'module' or 'module:attribute' exposing `LLM` and `SamplingParams` "
        "(tests on CPU plug in reinforge.testing.fake_engines:TRTLLM_API, a stand-in, not TensorRT-LLM)",
        default="tensorrt_llm",
    )
    extra_engine_args: dict[str, Any] = doc("further LLM(...) arguments passed verbatim", factory=dict)
