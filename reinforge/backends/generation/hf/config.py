"""Options of the `hf` generation backend (light: imports only attrs)."""

from __future__ import annotations

from typing import Literal

import attrs
from attrs import validators as v

from reinforge.core.config import doc


@attrs.define(kw_only=True, frozen=True)
class HFGenerationConfig:
    """How the `hf` backend runs `model.generate`; sampling itself comes from `SamplingParams`."""

    device: Literal["auto", "cpu", "cuda"] = doc("where the model runs (auto: cuda when available, else cpu)", default="auto")
    max_batch_size: int | None = doc(
        "rows (prompts x n) per generate() call at most (null: no cap on rows; max_batch_tokens still applies)",
        default=None,
        validator=v.optional(v.gt(0)),
    )
    max_batch_tokens: int | None = doc(
        "rows per generate() call are also capped so that rows x (longest prompt + max_new_tokens) <= this, which "
        "bounds the call's KV cache (bytes per token x this: 1.8 GiB for a 1.5B Qwen2 in bfloat16 at 65536) "
        "(null: no cap); a row longer than this still runs, alone",
        default=65536,
        validator=v.optional(v.gt(0)),
    )
    share_prompt_prefill: bool = doc(
        "with n > 1, run each distinct prompt's prefill once and copy its KV cache to its n rows, instead of "
        "prefilling n identical copies; greedy outputs are unchanged, sampled ones match up to float rounding "
        "of the first step's logits (the last prompt token is computed on its own)",
        default=False,
    )
    reserve_kv_cache: bool = doc(
        "each generate() call reserves its KV cache for the full length (prompt + max_new_tokens) once and writes "
        "every step in place, instead of transformers' DynamicCache, which copies the whole cache at every step "
        "(false: transformers' own cache; outputs are the same either way)",
        default=True,
    )
    attn_implementation: Literal["sdpa", "eager"] = doc("attention kernel passed to from_pretrained", default="sdpa")
