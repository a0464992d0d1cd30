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
        "rows (prompts x n) per generate() call; bounds the KV cache and padding waste (null: all rows in one call)",
        default=64,
        validator=v.optional(v.gt(0)),
    )
    share_prompt_prefill: bool = doc(
        "with n > 1, run each distinct prompt's prefill once and copy its KV cache to its n rows, instead of "
        "prefilling n identical copies; greedy outputs are unchanged, sampled ones match up to float rounding "
        "of the first step's logits (the last prompt token is computed on its own)",
        default=False,
    )
    attn_implementation: Literal["sdpa", "eager"] = doc("attention kernel passed to from_pretrained", default="sdpa")
