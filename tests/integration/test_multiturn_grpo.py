"""Two GRPO steps of each multi-turn recipe on the tiny model: the calculator and the sliding puzzle (built in)
and the word_guess game of the example plugin package, used by name as an installed package is."""

from __future__ import annotations

import json

import pytest

from reinforge.core.load import load_config
from reinforge.trainer import Trainer
from tests.integration.example_plugins import word_guess_registry
from tests.integration.grpo_helpers import REPO, read_metrics, tiny_overrides

pytestmark = pytest.mark.integration

RECIPES = REPO / "examples" / "configs"


def overrides(model_dir, out, *extra):
    """The tiny shrink of grpo_helpers, keeping the recipe's data, environment and training-backend options.

    The lengths are the recipes' own or more: the tiny tokenizer spells the worked examples out in ~350 tokens."""
    keep = [o for o in tiny_overrides(model_dir, out) if not o.startswith(("data.", "env.", "policy.backend_cfg"))]
    return [*keep, "policy.max_total_sequence_length=640", "data.max_input_seq_length=512", "logger.num_samples_to_log=2",
            "grpo.max_val_samples=2", *extra]


def run(recipe, model_dir, out, registry=None, *extra):
    config = load_config(RECIPES / recipe, overrides(model_dir, out, *extra), registry=registry)
    metrics = Trainer.from_config(config, registry).fit()
    rows = read_metrics(out / "logs")
    assert [r["step"] for r in rows if "train/loss" in r] == [1, 2]
    for key in ("train/turns_mean", "train/turns_max", "train/max_turns_reached_rate", "val/accuracy"):
        assert key in metrics, key
    samples = [json.loads(line) for path in sorted((out / "logs" / "samples").glob("*.jsonl")) for line in path.read_text().splitlines()]
    assert samples and all(s["conversation"][0]["role"] == "assistant" and s["prompt"] for s in samples if "conversation" in s)
    return config, metrics


def test_calculator_recipe_runs_two_steps(tiny_model_dir, tmp_path):
    config, metrics = run("grpo-calculator-smollm2-cpu.yaml", tiny_model_dir, tmp_path)
    assert config.grpo.max_rollout_turns == 3 and config.data.example_turns[2].role == "tool"
    for key in ("env/tool_calls", "env/invalid_tool_calls", "env/final_answers", "train/reward/answer_mean", "train/reward/invalid_call_mean"):
        assert key in metrics, key


def test_sliding_puzzle_recipe_runs_two_steps(tiny_model_dir, tmp_path):
    config, metrics = run("grpo-sliding-puzzle-cpu.yaml", tiny_model_dir, tmp_path)
    # an untrained model rarely names a legal tile: episodes go on until the turn limit or the context ends them
    assert metrics["train/turns_max"] >= 2
    assert metrics["train/max_turns_reached_rate"] + metrics["train/truncation_rate"] > 0
    assert metrics["train/reward/invalid_move_mean"] < 0 and "train/reward/solved_mean" in metrics


def test_the_installed_word_guess_package_trains_by_name(tiny_model_dir, tmp_path, monkeypatch):
    registry = word_guess_registry(monkeypatch)
    assert str(registry.get("environment", "word_guess").source) == "reinforge-word-guess==0.1.0"
    config, metrics = run("grpo-word-guess-cpu.yaml", tiny_model_dir, tmp_path, registry)
    assert config.grpo.multi_turn_reward == "last" and config.env.name == "word_guess"
    assert "train/reward/letters_mean" in metrics and metrics["env/guesses"] > 0
