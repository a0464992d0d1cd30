"""`ModelConfig`: the model a run trains and generates with, as every backend sees it.

Why its own class: a generation backend needs to know which weights and tokenizer to load, in
what precision, and how long a sequence may grow; it must not be handed the optimizer, the
scheduler or the batch sizes (those are the training backend's, in `PolicyConfig`). Training
and generation backends read the model from here, so a setting both must agree on (a LoRA
adapter, a chat template) has one home. The YAML keys stay where they were (`policy.model_name`,
`policy.precision`, ...): `PolicyConfig.model` and the eval config map them.
"""

from __future__ import annotations

from typing import Literal

import attrs
from attrs import validators as v

from reinforge.core.config import doc
from reinforge.core.lora_config import LoRAConfig


@attrs.define(kw_only=True, frozen=True)
class ModelConfig:
    """Which model, which tokenizer and chat template, what precision, how long a sequence may be, which adapters."""

    model_name: str = doc("Hugging Face model folder or hub name")
    tokenizer_name: str | None = doc("tokenizer folder (default: model_name)", default=None)
    chat_template: str | None = doc(
        "null: the tokenizer's own chat template (an error if it has none); 'default': ChatML when the tokenizer "
        "has none; or a path to a .jinja file, which replaces the tokenizer's template",
        default=None,
    )
    precision: Literal["float32", "bfloat16"] = doc("parameter and compute dtype", default="float32")
    max_total_sequence_length: int = doc("prompt + response tokens", default=1024, validator=v.gt(0))
    lora: LoRAConfig = doc(
        "low-rank adapters the trainer trains on this model (generators receive merged weights)", factory=LoRAConfig
    )

    @property
    def tokenizer_folder(self) -> str:
        """Where the tokenizer is loaded from: `tokenizer_name`, else the model's own folder."""
        return self.tokenizer_name or self.model_name
