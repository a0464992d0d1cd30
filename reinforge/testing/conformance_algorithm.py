"""Conformance tests that any registered algorithm plugin runs against itself.

Why: an algorithm is chosen by name in a recipe (`algorithm: NAME`) and driven by the loop, which
reads its schedule from the run config, saves `state_dict()` with every checkpoint and restores it
on resume. These tests run the algorithm as a user's recipe would — read from YAML with
`load_config`, built with `Trainer.from_config` on the local executor, on the kit's tiny model —
and check that it trains, that the schedule written in its config section is the one that runs,
and that a resumed run continues from the checkpoint with the state it saved:

    from reinforge.testing.conformance_algorithm import AlgorithmConformance

    class TestMyAlgorithm(AlgorithmConformance):
        algorithm_name = "my_grpo"                     # a registered algorithm
        overrides = ("grpo.num_prompts_per_step=4",)   # dotted overrides of the suite's small run, if needed

The run is small (2 steps of 8 rows, responses of 8 tokens, arithmetic records of the format the
algorithm declares; a section with GRPO's `num_prompts_per_step` / `num_generations_per_prompt` gets 4 x 2) and rewards come from a plain function of the response, so no environment plugin is
needed. `reinforge plugins check NAME` runs this suite against an installed algorithm.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from reinforge.core.registry import Registry
from reinforge.models.tiny_model import build_model

STEPS = 2
SMALL_BATCH = 8  # rows per optimizer step: policy.train_global_batch_size
# The dataset reader that makes records of each record format (`Algorithm.record_format.kind`).
DATASETS = {"prompts": "arithmetic", "conversations": "arithmetic_sft", "preference_pairs": "arithmetic_preferences"}


def varied_reward(prompt: str, response: str, **metadata: Any) -> float:
    """A reward that differs between samples of one prompt, so group-relative advantages are not all 0."""
    return (len(response) % 5) / 4


class AlgorithmConformance:
    """Mix into a `Test...` class; set `algorithm_name` (and `registry`, `overrides` where needed)."""

    algorithm_name: ClassVar[str | None] = None
    registry: ClassVar[Registry | None] = None  # default: Registry.create() (installed and project plugins)
    overrides: ClassVar[tuple[str, ...]] = ()  # dotted overrides applied after the suite's own

    @classmethod
    def make_registry(cls) -> Registry:
        return cls.registry or Registry.create()

    @classmethod
    def load(cls, registry: Registry, model_dir: Path, out: Path, *, steps: int, dataset: str = "arithmetic") -> Any:
        """The run config of a small run, written as a recipe and read back with `load_config`."""
        from reinforge.core.config import field_names
        from reinforge.core.load import load_config
        from reinforge.core.loop import schedule_section_name

        if cls.algorithm_name is None:
            raise NotImplementedError("set algorithm_name on the test class")
        name = cls.algorithm_name
        run_config_class = registry.config_class("algorithm", name)
        if run_config_class is None:
            raise AssertionError(f"the algorithm '{name}' registered no run config (register(..., config=...) or run_config=...)")
        sections = set(field_names(run_config_class))
        raw: dict[str, Any] = {
            "algorithm": name,
            "policy": {"model_name": str(model_dir), "max_total_sequence_length": 256, "generation": {"max_new_tokens": 8}},
            "data": {
                "dataset": dataset,
                "dataset_cfg": {"num_samples": 64, "num_validation_samples": 8, "max_operand": 10},
                "max_input_seq_length": 128,
            },
            "logger": {"loggers": ["jsonl"], "log_dir": str(out / "logs")},
            "checkpointing": {"enabled": True, "checkpoint_dir": str(out / "checkpoints"), "save_period": 1},
        }
        raw["policy"].update(train_global_batch_size=SMALL_BATCH, train_micro_batch_size=4, logprob_batch_size=SMALL_BATCH)
        raw = {key: value for key, value in raw.items() if key == "algorithm" or key in sections}
        section = schedule_section_name(run_config_class, name)
        raw[section] = {"max_num_steps": steps}
        out.mkdir(parents=True, exist_ok=True)
        recipe = out / "recipe.yaml"
        recipe.write_text(yaml.safe_dump(raw, sort_keys=False))
        config = load_config(recipe, cls.overrides, registry)
        if all(hasattr(getattr(config, section), key) for key in ("num_prompts_per_step", "num_generations_per_prompt")):
            # GRPO and its variants: 4 prompts x 2 samples, one optimizer step of SMALL_BATCH rollouts
            raw[section].update(num_prompts_per_step=SMALL_BATCH // 2, num_generations_per_prompt=2)
            recipe.write_text(yaml.safe_dump(raw, sort_keys=False))
            config = load_config(recipe, cls.overrides, registry)
        return config

    @classmethod
    def train(cls, registry: Registry, config: Any) -> Any:
        """`Trainer.from_config(config)`, rewards from `varied_reward`."""
        from reinforge.environments.function import FunctionEnvironment
        from reinforge.trainer import Trainer

        return Trainer.from_config(config, registry, environment=FunctionEnvironment(varied_reward))

    # ------------------------------------------------------------------ fixtures
    @pytest.fixture(scope="class")
    @classmethod
    def algorithm_model_dir(cls, tmp_path_factory: pytest.TempPathFactory) -> Path:
        return build_model(tmp_path_factory.mktemp("conformance") / "model", size="tiny", seed=0)

    @pytest.fixture(scope="class")
    @classmethod
    def first_run(cls, algorithm_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
        """A run of STEPS steps, a checkpoint after each (the records follow the algorithm's record format).

        torch runs on one thread meanwhile: on the tiny model that is faster than one per core, and steadier
        on a busy machine."""
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            registry = cls.make_registry()
            out = tmp_path_factory.mktemp("algorithm-run")
            config = cls.load(registry, algorithm_model_dir, out, steps=STEPS)
            declared = getattr(registry.algorithm(cls.algorithm_name)(config), "record_format", None)
            kind = getattr(declared, "kind", "prompts")  # an algorithm with its own prepare_data gets prompt records
            if kind in DATASETS and kind != "prompts":  # records of the algorithm's own format
                config = cls.load(registry, algorithm_model_dir, out, steps=STEPS, dataset=DATASETS[kind])
            trainer = cls.train(registry, config)
            metrics = trainer.fit()
            yield {"registry": registry, "config": config, "trainer": trainer, "metrics": metrics, "out": out,
                   "model_dir": algorithm_model_dir, "dataset": config.data.dataset}
        finally:
            torch.set_num_threads(threads)

    # ------------------------------------------------------------------ training
    def test_trains_for_the_steps_its_config_section_sets(self, first_run: dict[str, Any]) -> None:
        trainer = first_run["trainer"]
        assert trainer.loop.max_steps == STEPS, (
            f"the run config says max_num_steps: {STEPS}, but the loop was scheduled for {trainer.loop.max_steps} steps: "
            "the schedule section is not the one the loop reads"
        )
        assert trainer.step == STEPS

    def test_a_step_returns_finite_metrics(self, first_run: dict[str, Any]) -> None:
        metrics = first_run["metrics"]
        assert metrics, "train_step returned no metrics"
        for key, value in metrics.items():
            assert isinstance(key, str) and isinstance(value, (int, float)), f"metric {key!r}: {value!r}"
            assert math.isfinite(value), f"metric {key!r} is {value}"

    def test_its_state_is_plain_data(self, first_run: dict[str, Any]) -> None:
        state = first_run["trainer"].algorithm.state_dict()
        json.dumps(state, allow_nan=False)  # checkpoints store it as JSON (no pickle)

    # ------------------------------------------------------------------ checkpoints
    def test_a_resumed_run_continues_from_the_checkpoint_with_the_saved_state(self, first_run: dict[str, Any]) -> None:
        saved = first_run["trainer"].algorithm.state_dict()
        steps = sorted(p.name for p in (first_run["out"] / "checkpoints").iterdir() if p.name.startswith("step_"))
        assert steps == [f"step_{i}" for i in range(1, STEPS + 1)], f"a checkpoint after every step was asked for, got {steps}"
        registry = first_run["registry"]
        config = self.load(registry, first_run["model_dir"], first_run["out"], steps=STEPS + 1, dataset=first_run["dataset"])
        trainer = self.train(registry, config)
        assert trainer.resume() and trainer.step == STEPS
        restored = trainer.algorithm.state_dict()
        assert json.loads(json.dumps(restored)) == json.loads(json.dumps(saved)), "load_state_dict(state_dict()) lost state"
        trainer.fit()
        assert trainer.step == STEPS + 1
