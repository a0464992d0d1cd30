"""GRPO end to end on the tiny model: the loop, checkpoints, resume, recipes, the seed's commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reinforge.core.interfaces import EnvironmentStep
from reinforge.core.load import load_config
from reinforge.trainer import Trainer
from tests.integration.grpo_helpers import CPU_RECIPE, REPO, read_metrics, tiny_overrides

pytestmark = pytest.mark.integration

# The phases of a GRPO step, timed one after another inside timing/total. Validation's own generation
# and reward count in generation and reward, so validation overlaps them and is not in this list.
SEQUENTIAL_PHASES = ("generation", "reward", "refit", "logprobs", "training", "checkpoint")


def test_grpo_steps_log_metrics_timings_and_checkpoint(tiny_model_dir, tmp_path):
    config = load_config(CPU_RECIPE, tiny_overrides(tiny_model_dir, tmp_path, steps=2, extra=("checkpointing.save_period=1",)))
    metrics = Trainer.from_config(config).fit()
    for key in ("train/reward_mean", "train/accuracy", "train/loss", "train/grad_norm", "train/lr",
                "train/response_length_mean", "train/truncation_rate", "train/token_mult_prob_error",
                "train/clip_fraction", "train/advantages_mean", "refit/seconds"):
        assert key in metrics, key
    assert "val/accuracy" in metrics  # val_at_end
    # The generator held the trainer's weights for step 2 (refit after step 1): the logprob mismatch is tiny.
    assert metrics["train/token_mult_prob_error"] == pytest.approx(1.0, abs=1e-3)
    rows = read_metrics(tmp_path / "logs")
    assert [r["step"] for r in rows] == [1, 2]
    timings = [{k.removeprefix("timing/"): v for k, v in row.items() if k.startswith("timing/")} for row in rows]
    # Step 1 refits nothing (the generator starts with the trainer's weights) and does not validate;
    # step 2 refits the weights step 1 trained, and validates (val_at_end). Every step saves (save_period=1).
    assert timings[0].keys() == {*SEQUENTIAL_PHASES, "total", "generation_idle", "training_idle"} - {"refit"}
    assert timings[1].keys() == {*SEQUENTIAL_PHASES, "validation", "total", "generation_idle", "training_idle"}
    for t in timings:
        # logprobs may take no time at all (on-policy: no previous-policy or reference pass to run)
        assert all(t[phase] > 0 for phase in t.keys() - {"logprobs", "generation_idle", "training_idle"}), t
        assert sum(t[phase] for phase in SEQUENTIAL_PHASES if phase in t) <= t["total"], t
    last = timings[1]  # validation is apart from the trainer's phases and the refits too
    assert last["validation"] + last["refit"] + last["logprobs"] + last["training"] + last["checkpoint"] <= last["total"]
    assert metrics["timing/total"] == timings[1]["total"]  # fit() returns the last step's metrics
    for t in timings:  # idle time: the step's total minus each side's own phases; it covers the other side's work
        busy_generator = t["generation"] + t.get("refit", 0.0)
        busy_trainer = t["logprobs"] + t["training"] + t.get("refit", 0.0) + t.get("checkpoint", 0.0)
        assert t["generation_idle"] == pytest.approx(max(t["total"] - busy_generator, 0.0), abs=1e-12)
        assert t["training_idle"] == pytest.approx(max(t["total"] - busy_trainer, 0.0), abs=1e-12)
        assert t["generation_idle"] >= t["logprobs"] + t["training"] + t["reward"] - 1e-9
        assert t["training_idle"] >= t["generation"] + t["reward"] - 1e-9
    steps = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert steps == ["step_1", "step_2"]
    for name in ("config.yaml", "training_info.json", "dataloader.json", "trainer_state.json", "trainer_rng.safetensors", "manifest.json"):
        assert (tmp_path / "ckpt" / "step_2" / name).exists(), name
    samples = list((tmp_path / "logs" / "samples").glob("*.jsonl"))
    assert samples, "samples are written per step"


def test_resumed_run_reproduces_the_uninterrupted_metrics(tiny_model_dir, tmp_path):
    common = ("checkpointing.save_period=2",)
    full = load_config(CPU_RECIPE, tiny_overrides(tiny_model_dir, tmp_path / "full", steps=4, extra=common))
    Trainer.from_config(full).fit()

    first = load_config(CPU_RECIPE, tiny_overrides(tiny_model_dir, tmp_path / "split", steps=2, extra=common))
    Trainer.from_config(first).fit()
    resumed_config = load_config(CPU_RECIPE, tiny_overrides(tiny_model_dir, tmp_path / "split", steps=4, extra=common))
    resumed = Trainer.from_config(resumed_config)
    resumed.fit()

    uninterrupted = {r["step"]: r for r in read_metrics(tmp_path / "full" / "logs")}
    split = {r["step"]: r for r in read_metrics(tmp_path / "split" / "logs")}
    for step in (3, 4):
        for key in ("train/reward_mean", "train/loss", "train/grad_norm", "train/response_length_mean", "train/lr"):
            assert split[step][key] == pytest.approx(uninterrupted[step][key], rel=1e-5, abs=1e-6), (step, key)


def test_half_written_checkpoint_is_never_resumed(tiny_model_dir, tmp_path):
    config = load_config(CPU_RECIPE, tiny_overrides(tiny_model_dir, tmp_path, steps=1, extra=("checkpointing.save_period=1",)))
    Trainer.from_config(config).fit()
    (tmp_path / "ckpt" / "tmp_step_5").mkdir()  # what a crash during a save leaves behind
    again = load_config(CPU_RECIPE, tiny_overrides(tiny_model_dir, tmp_path, steps=2, extra=("checkpointing.save_period=1",)))
    trainer = Trainer.from_config(again)
    trainer.fit()
    assert trainer.step == 2
    assert not (tmp_path / "ckpt" / "tmp_step_5").exists()


class ConstantPerPrompt:
    """Every sample of a prompt gets the same reward: no group has any variance."""

    def step(self, conversations, metadata):
        n = len(conversations)
        return EnvironmentStep(rewards=[float(len(m["problem"]) % 2) for m in metadata], observations=[None] * n, done=[True] * n)

    def shutdown(self):
        pass


class Alternating(ConstantPerPrompt):
    """Rewards 0, 1, 0, 1, ... down the batch: every group of 4 adjacent samples has variance."""

    def step(self, conversations, metadata):
        n = len(conversations)
        return EnvironmentStep(rewards=[float(i % 2) for i in range(n)], observations=[None] * n, done=[True] * n)


DYNAMIC = (
    "grpo.use_dynamic_sampling=true",
    "grpo.dynamic_sampling_max_gen_batches=3",
    "grpo.overlong_filtering=true",
    "grpo.reward_shaping={enabled: true, max_response_length: 12, overlong_buffer_length: 4, overlong_buffer_penalty: 0.5}",
)


def test_dynamic_sampling_drops_groups_without_variance_and_gives_up_after_max_rounds(tiny_model_dir, tmp_path):
    config = load_config(CPU_RECIPE, tiny_overrides(tiny_model_dir, tmp_path, steps=1, extra=DYNAMIC))
    metrics = Trainer.from_config(config, environment=ConstantPerPrompt()).fit()
    assert metrics["train/dynamic_sampling_rounds"] == 3.0  # every round's groups were dropped
    assert metrics["train/dynamic_sampling_kept"] == 0.0
    assert metrics["train/skipped"] == 1.0 and "train/loss" not in metrics


def test_dynamic_sampling_keeps_groups_with_variance_in_one_round(tiny_model_dir, tmp_path):
    config = load_config(CPU_RECIPE, tiny_overrides(tiny_model_dir, tmp_path, steps=1, extra=DYNAMIC))
    metrics = Trainer.from_config(config, environment=Alternating()).fit()
    assert metrics["train/dynamic_sampling_rounds"] == 1.0
    assert metrics["train/dynamic_sampling_kept"] == 8.0  # 2 prompts x 4 samples, all kept
    assert metrics["train/num_rollouts"] == 8.0 and "train/loss" in metrics


@pytest.mark.parametrize("stage", ["8K", "16K", "24K"])
def test_deepscaler_recipes_validate_and_run_one_tiny_step(stage, tiny_model_dir, tmp_path):
    recipe = REPO / "examples" / "configs" / f"grpo-deepscaler-1.5b-{stage}.yaml"
    published = load_config(recipe)
    assert published.grpo.num_prompts_per_step == 128 and published.grpo.num_generations_per_prompt == 8
    assert published.policy.train_global_batch_size == 64 and published.policy.generation.backend == "vllm"
    # The recipes' chain-of-thought prompt template, with room for it.
    overrides = [
        *tiny_overrides(tiny_model_dir, tmp_path, steps=1),
        "data.prompt_file=cot",
        "data.max_input_seq_length=200",
        "policy.max_total_sequence_length=224",
    ]
    metrics = Trainer.from_config(load_config(recipe, overrides)).fit()
    assert "train/loss" in metrics


def run_example(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(REPO / "examples" / script), *args], capture_output=True, text=True, cwd=cwd, env=env)


def test_seed_commands_train_convert_eval(tiny_model_dir, tmp_path):
    overrides = tiny_overrides(tiny_model_dir, tmp_path, steps=1, extra=("checkpointing.save_period=1",))
    train = run_example("run_grpo_math.py", f"--config={CPU_RECIPE}", *overrides, cwd=tmp_path)
    assert train.returncode == 0, train.stderr[-3000:]
    step = tmp_path / "ckpt" / "step_1"
    convert = run_example(
        "convert_dcp_to_hf.py",
        f"--config={step / 'config.yaml'}",
        f"--dcp-ckpt-path={step / 'policy'}",
        f"--hf-ckpt-path={tmp_path / 'hf'}",
        cwd=tmp_path,
    )
    assert convert.returncode == 0, convert.stderr[-3000:]
    assert (tmp_path / "hf" / "config.json").exists()
    evaluation = run_example(
        "run_eval.py",
        f"generation.model_name={tmp_path / 'hf'}",
        "generation.backend=hf",
        "generation.backend_cfg=null",
        "generation.precision=float32",
        "generation.max_new_tokens=12",
        "generation.max_total_sequence_length=96",
        "data.dataset=arithmetic",
        "data.dataset_cfg={split: validation, num_samples: 4, num_validation_samples: 8}",
        "data.max_input_seq_length=64",
        "data.prompt_file=null",
        "env.env_cfg={num_workers: 1}",
        f"eval.save_path={tmp_path / 'samples.jsonl'}",
        "--json",
        cwd=tmp_path,
    )
    assert evaluation.returncode == 0, evaluation.stderr[-3000:]
    result = json.loads(evaluation.stdout)
    samples = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    # The CPU default eval config: 4 samples per problem (adjacent), avg@4 and pass@4.
    assert result["num_problems"] == 4 and len(samples) == 16
    correct = [[s["reward"] >= 1.0 for s in samples[i : i + 4]] for i in range(0, 16, 4)]
    assert result["avg@4"] == pytest.approx(sum(map(sum, correct)) / 16)
    assert result["pass@4"] == pytest.approx(sum(any(c) for c in correct) / 4)  # pass@k with k = n: any correct
