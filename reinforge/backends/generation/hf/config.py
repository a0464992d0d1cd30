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
    max_batch_size: int = doc(
        "rows (prompts x n) per generate() call; bounds the KV cache and padding waste", default=64, validator=v.gt(0)
    )
    attn_implementation: Literal["sdpa", "eager"] = doc("attention kernel passed to from_pretrained", default="sdpa")
