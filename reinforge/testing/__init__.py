"""Test kit: a tiny Qwen2 model and tokenizer built offline, a warm-up, and pytest fixtures.

Importing this package is cheap; torch and transformers load when a model is built.
Fixtures: `pytest_plugins = ["reinforge.testing.fixtures"]`.
"""

from __future__ import annotations

from reinforge.testing.evaluate import AccuracyReport, sample_accuracy
from reinforge.models.tiny_model import KIT_VERSION, PRESETS, ModelPreset, build_model, cache_root, model_config
from reinforge.models.tiny_tokenizer import CHAT_TEMPLATE, IM_END, IM_START, PAD_TOKEN, build_tokenizer
from reinforge.models.warmup import SYSTEM_PROMPT, WarmupConfig, conversation, warm_up, warmup_split

__all__ = [
    "CHAT_TEMPLATE",
    "IM_END",
    "IM_START",
    "KIT_VERSION",
    "PAD_TOKEN",
    "PRESETS",
    "SYSTEM_PROMPT",
    "AccuracyReport",
    "ModelPreset",
    "WarmupConfig",
    "build_model",
    "build_tokenizer",
    "cache_root",
    "conversation",
    "model_config",
    "sample_accuracy",
    "warm_up",
    "warmup_split",
]
