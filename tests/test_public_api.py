"""`import reinforge as rf`: the names a user composes a run from, each taking only its own settings."""

from __future__ import annotations

import subprocess
import sys

import pytest

import reinforge as rf


def test_import_reinforge_is_light():
    code = "import sys, reinforge as rf; rf.backends; rf.environments; rf.LoopConfig; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_every_exported_name_resolves():
    for name in rf.__all__:
        assert getattr(rf, name) is not None, name
    assert rf.hookimpl is not None and callable(rf.Trainer.from_config)


def test_generation_spec_takes_sampling_settings_and_its_backend_options():
    spec = rf.backends.HFGeneration(max_new_tokens=12, temperature=0.7, device="cpu")
    assert spec.generation.backend == "hf" and spec.generation.max_new_tokens == 12 and spec.generation.temperature == 0.7
    assert spec.generation.backend_cfg.device == "cpu"
    assert rf.backends.HFGeneration().generation.backend_cfg is None  # no options: the backend's defaults
    with pytest.raises(rf.ReinforgeError, match=r"unknown key 'max_new_token'.*max_new_tokens|max_new_token"):
        rf.backends.HFGeneration(max_new_token=12)  # a typo is an error, like an unknown YAML key
    with pytest.raises(rf.ReinforgeError, match="lr"):
        rf.backends.HFGeneration(lr=1e-3)  # a generator takes no optimizer settings


def test_training_spec_takes_policy_settings_lr_and_backend_options():
    spec = rf.backends.DTensorTraining("m/", lr=3e-4, train_global_batch_size=16, tensor_parallel_size=1)
    policy = spec.policy
    assert policy.model_name == "m/" and policy.backend == "dtensor" and policy.optimizer.lr == 3e-4
    assert policy.train_global_batch_size == 16 and policy.backend_cfg.tensor_parallel_size == 1
    optimizer = rf.OptimizerConfig(name="sgd", lr=0.5)
    assert rf.backends.DTensorTraining("m/", optimizer=optimizer).policy.optimizer == optimizer
    with pytest.raises(rf.ReinforgeError, match="train_global_batch_size"):
        rf.backends.DTensorTraining("m/", train_global_batch_size=6, train_micro_batch_size=4)  # the same checks as YAML


def test_environment_and_dataset_specs():
    math = rf.environments.Math(require_boxed=True, num_workers=1)
    assert math.env.name == "math" and math.env.env_cfg.require_boxed and math.env.env_cfg.num_workers == 1
    reader = rf.data.Reader("arithmetic", num_samples=5, max_operand=10)
    assert reader.name == "arithmetic" and reader.options.num_samples == 5
    records = rf.data.arithmetic_problems(num_samples=3, max_operand=10)
    assert len(records) == 3 and {"problem", "answer"} <= set(records[0])


def test_the_loop_config_maps_to_checkpointing():
    assert not rf.LoopConfig().checkpointing().enabled
    ckpt = rf.LoopConfig(checkpoint_dir="c", save_period=3, keep_top_k=2, metric_name="val:accuracy").checkpointing()
    assert ckpt.enabled and (ckpt.checkpoint_dir, ckpt.save_period, ckpt.keep_top_k) == ("c", 3, 2)


def test_from_config_maps_the_recipe_schedule_into_the_loop():
    from reinforge.core.loop import loop_from_run_config
    from tests.integration.grpo_helpers import CPU_RECIPE

    loop = loop_from_run_config(rf.load_config(CPU_RECIPE))
    assert (loop.max_steps, loop.val_period, loop.val_at_start, loop.val_at_end, loop.seed) == (20, 10, True, True, 42)
    assert (loop.checkpoint_dir, loop.save_period, loop.keep_top_k, loop.metric_name) == (
        "results/grpo-arith-cpu/checkpoints", 10, 2, "val:accuracy")
    assert loop.prompts_per_step is None and loop.shuffle  # prompts per step: the algorithm's (grpo.num_prompts_per_step)
    off = loop_from_run_config(rf.load_config(CPU_RECIPE, ["checkpointing.enabled=false"]))
    assert off.checkpoint_dir is None
