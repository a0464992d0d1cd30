"""Every recipe under examples/configs validates (what `reinforge config show` checks)."""

from __future__ import annotations

import pytest

from reinforge.core.load import load_config
from reinforge.eval.config import EvalConfig
from tests.integration.grpo_helpers import REPO

RECIPES = sorted((REPO / "examples" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipe_validates(recipe):
    config = load_config(recipe)
    assert config.algorithm in {"grpo", "sft", "dpo"}


def test_eval_config_validates():
    config = load_config(REPO / "examples" / "configs" / "evals" / "eval.yaml", schema=EvalConfig)
    assert config.generation.backend == "vllm" and config.eval.metric == "pass@k"
