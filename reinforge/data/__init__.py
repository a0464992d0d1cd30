"""Data: dataset readers, prompt templates and building, and the resumable prompt stream.

Nothing heavy is imported here: `datasets` is imported when a dataset is read.
"""

from __future__ import annotations

from reinforge.data.datasets import PRESETS, DatasetConfig, load_records
from reinforge.data.loader import PromptLoader
from reinforge.data.prompts import (
    DEFAULT_CHAT_TEMPLATE,
    PromptConfig,
    build_prompts,
    ensure_chat_template,
    load_prompt_template,
)

__all__ = [
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
