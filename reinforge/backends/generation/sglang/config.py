"""Options of the `sglang` generation backend (light: imports only attrs)."""

from __future__ import annotations

from typing import Any, Literal

import attrs
from attrs import validators as v

from reinforge.core.config import doc


@attrs.define(kw_only=True, frozen=True)
class SglangConfig:
    """How the `sglang` backend starts `sglang.Engine`; sampling itself comes from `SamplingParams`."""

    tp_size: int = doc("GPUs per engine replica (tensor parallel)", default=1, validator=v.gt(0))
    mem_fraction_static: float = doc(
        "share of GPU memory SGLang reserves for weights + KV cache", default=0.6, validator=[v.gt(0), v.le(1)]
    )
    context_length: int | None = doc(
        "longest prompt + response (null: policy.max_total_sequence_length)", default=None, validator=v.optional(v.gt(0))
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = doc("engine dtype (auto: policy.precision)", default="auto")
    skip_tokenizer_init: bool = doc(
        "run SGLang without its tokenizer (token ids only; stop strings are then matched here, after generation)",
        default=True,
    )
    enable_memory_saver: bool = doc(
        "start SGLang with torch_memory_saver so sleep()/wake() release and resume GPU memory", default=True
    )
    weights_cpu_backup: bool = doc(
        "keep a host copy of the weights while asleep (wake restores them; false saves host RAM but the next refit "
        "must send every weight)",
        default=True,
    )
    enable_prefix_caching: bool = doc("radix cache: reuse KV across prompts sharing a prefix", default=True)
    disable_cuda_graph: bool = doc("no CUDA graphs (faster start; use when debugging logprob mismatches)", default=False)
    deterministic_inference: bool = doc(
        "SGLang's batch-invariant kernels (--enable-deterministic-inference); needed for per-sample seeds to bind",
        default=False,
    )
    refit_bucket_mb: int = doc("MiB of weights per update_weights_from_tensor call", default=512, validator=v.gt(0))
    engine_api: str = doc(
        "import path of the engine package, 'module' or 'module:attribute' exposing `Engine` (tests on CPU plug in "
        "reinforge.testing.fake_engines:SGLANG_API, a stand-in, not SGLang)",
        default="sglang",
    )
    extra_engine_args: dict[str, Any] = doc(
        "further sglang ServerArgs passed to Engine(...) verbatim, e.g. {attention_backend: fa3}", factory=dict
    )
