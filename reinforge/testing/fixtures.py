"""pytest fixtures for a tiny offline model; enable with `pytest_plugins = ["reinforge.testing.fixtures"]`.

Why: every test that touches a model needs one, and none may download it. The folder is
built once per test session into pytest's temporary directory (about a second), so tests
never depend on, or write to, the user's cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from reinforge.models.tiny_model import build_model

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Hugging Face folder with the randomly initialised "tiny" Qwen2 (~0.4 M parameters) and its tokenizer.

    Session-scoped and shared: treat it as read-only (copy it before writing into it).
    """
    return build_model(tmp_path_factory.mktemp("reinforge-tiny") / "model", size="tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir: Path) -> PreTrainedTokenizerBase:
    """The tokenizer of `tiny_model_dir`, loaded with `AutoTokenizer` (shared: do not mutate it)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture
def tiny_model(tiny_model_dir: Path) -> PreTrainedModel:
    """A fresh `Qwen2ForCausalLM` loaded from `tiny_model_dir` for each test (safe to train or modify)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir)
