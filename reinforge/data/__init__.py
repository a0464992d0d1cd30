"""Data: dataset readers, prompt templates and building, and the resumable prompt stream.

Nothing heavy is imported here: `datasets` is imported when a dataset is read.
"""

from __future__ import annotations

from typing import Any

from reinforge.data.datasets import PRESETS, DatasetConfig, load_records
from reinforge.data.loader import PromptLoader
from reinforge.data.prompts import (
    DEFAULT_CHAT_TEMPLATE,
    PromptConfig,
    build_prompts,
    ensure_chat_template,
    load_prompt_template,
)



def Reader(name: str, **options: Any) -> Any:  # noqa: N802 - reads as a constructor, returns a spec
    """Records from the registered dataset reader `name` with its options, read when the run is built:
    `Reader("jsonl", data_files="train.jsonl", input_key="question", output_key="answer")`."""
    from reinforge.core.specs import DatasetSpec
    from reinforge.core.specs import plugin_config

    return DatasetSpec(name=name, options=plugin_config("dataset", name, options))


def arithmetic_problems(**options: Any) -> list[dict[str, Any]]:
    """Generated arithmetic problems `{"problem", "answer", ...}` (offline); options: `ArithmeticDatasetConfig`
    (split, num_samples, ops, max_operand, ...)."""
    from reinforge.data.readers import ArithmeticDatasetConfig
    from reinforge.data.readers import arithmetic as read

    return read(ArithmeticDatasetConfig(**options))


__all__ = [
    "Reader",
    "arithmetic_problems",
    "DEFAULT_CHAT_TEMPLATE",
    "PRESETS",
    "DatasetConfig",
    "PromptConfig",
    "PromptLoader",
    "build_prompts",
    "ensure_chat_template",
    "load_prompt_template",
    "load_records",
]
