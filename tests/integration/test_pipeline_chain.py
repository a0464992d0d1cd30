"""The documented pipelines, run through the `reinforge` command as a user would (docs/recipes/pipelines.md).

SFT on arithmetic -> export -> GRPO from the export -> export -> `reinforge eval`, and DPO from the
SFT export. Every stage is its own process, so what passes between stages is only what a user
passes: Hugging Face folders and `policy.model_name=<previous export>`. The model is the tiny-model
kit's (built by `reinforge model build`) and each stage runs a few steps, so the chain is about
checking the hand-offs, not learning.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.integration.grpo_helpers import CPU_RECIPE, REPO, read_metrics, run_reinforge, tiny_overrides

pytestmark = pytest.mark.integration

CONFIGS = REPO / "examples" / "configs"
ARITH_DATA = "{split: train, num_samples: 40, num_validation_samples: 8, max_operand: 10}"
ARITH_VAL = "{split: validation, num_samples: 8, num_validation_samples: 8, max_operand: 10}"


def reinforge(*args: str, cwd: Path) -> str:
    return run_reinforge(*args, cwd=cwd, env={"REINFORGE_CACHE": str(cwd / "cache"), "OMP_NUM_THREADS": "1"})


def run_dirs(stage: Path) -> list[str]:
    return [f"checkpointing.checkpoint_dir={stage / 'ckpt'}", f"logger.log_dir={stage / 'logs'}", "logger.loggers=[jsonl]"]


def export(stage: Path, step: int, cwd: Path) -> Path:
    """`reinforge convert` of a finished stage's last checkpoint into <stage>/hf."""
    policy = stage / "ckpt" / f"step_{step}" / "policy"
    assert policy.is_dir(), sorted(p.name for p in (stage / "ckpt").iterdir())
    reinforge("convert", f"--dcp-ckpt-path={policy}", f"--hf-ckpt-path={stage / 'hf'}", cwd=cwd)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (stage / "hf" / name).is_file(), name
    return stage / "hf"


@pytest.fixture(scope="module")
def sft_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Stage 1: build the tiny model, SFT it for 3 steps on worked arithmetic, export it."""
    root = tmp_path_factory.mktemp("pipeline")
    reinforge("model", "build", "--size", "tiny", "--out", str(root / "base"), cwd=root)
    stage = root / "sft"
    reinforge(
        "train", "--config", str(CONFIGS / "sft-arith-cpu.yaml"),
        f"policy.model_name={root / 'base'}",
        "sft.max_num_steps=3", "sft.val_period=0", "sft.val_at_start=true",
        "policy.train_global_batch_size=8", "policy.train_micro_batch_size=8", "policy.logprob_batch_size=8",
        f"data.dataset_cfg={ARITH_DATA}", f"data.val_dataset_cfg={ARITH_VAL}",
        "checkpointing.save_period=3", *run_dirs(stage),
        cwd=root,
    )  # fmt: skip
    rows = read_metrics(stage / "logs")
    assert [r["step"] for r in rows if "train/loss" in r] == [1, 2, 3]
    assert sum("val/loss" in r for r in rows) == 2  # before the first step and after the last
    return export(stage, 3, root)


def test_sft_then_grpo_then_eval(sft_export: Path) -> None:
    root = sft_export.parents[1]
    stage = root / "grpo"
    overrides = tiny_overrides(sft_export, stage, steps=2, extra=("checkpointing.save_period=2",))
    reinforge("train", "--config", str(CPU_RECIPE), *overrides, cwd=root)
    config = (stage / "ckpt" / "step_2" / "config.yaml").read_text()
    assert f"model_name: {sft_export}" in config  # GRPO started from the SFT export
    assert [r["step"] for r in read_metrics(stage / "logs") if "train/reward_mean" in r] == [1, 2]
    grpo_export = export(stage, 2, root)

    eval_json = root / "eval.json"
    output = reinforge(
        "eval", "--config", str(CONFIGS / "evals" / "arith-cpu.yaml"),
        f"generation.model_name={grpo_export}",
        "generation.max_new_tokens=12", "generation.max_total_sequence_length=96",
        "eval.num_tests_per_prompt=4", "eval.k_value=2", f"eval.save_path={root / 'eval_samples.jsonl'}",
        f"data.dataset_cfg={ARITH_VAL}",
        "--json",
        cwd=root,
    )  # fmt: skip
    eval_json.write_text(output)  # what `reinforge eval ... --json > eval.json` leaves
    result = json.loads(eval_json.read_text())
    assert result["num_problems"] == 8 and result["num_samples"] == 32
    samples = [json.loads(line) for line in (root / "eval_samples.jsonl").read_text().splitlines()]
    assert len(samples) == 32 and {"problem", "response", "reward"} <= set(samples[0])
    # The scores, recomputed from the saved samples (each problem's 4 samples are adjacent):
    correct = [[s["reward"] >= 1.0 for s in samples[i : i + 4]] for i in range(0, 32, 4)]
    assert result["avg@4"] == pytest.approx(sum(map(sum, correct)) / 32)
    # unbiased pass@2 of 4 samples with c correct: 1 - C(4 - c, 2) / C(4, 2)
    assert result["pass@2"] == pytest.approx(sum(1 - math.comb(4 - sum(c), 2) / 6 for c in correct) / 8)
    assert 0.0 <= result["cons@2"] <= 1.0
    assert result["score"] == result["pass@2"]  # the arith-cpu eval config scores pass@k


def test_dpo_from_the_sft_export(sft_export: Path) -> None:
    root = sft_export.parents[1]
    stage = root / "dpo"
    reinforge(
        "train", "--config", str(CONFIGS / "dpo-arith-cpu.yaml"),
        f"policy.model_name={sft_export}",
        "dpo.max_num_steps=2", "dpo.val_period=0", "dpo.val_at_start=true",
        "policy.train_global_batch_size=4", "policy.train_micro_batch_size=4", "policy.logprob_batch_size=8",
        f"data.dataset_cfg={ARITH_DATA}", f"data.val_dataset_cfg={ARITH_VAL}",
        "checkpointing.save_period=2", *run_dirs(stage),
        cwd=root,
    )  # fmt: skip
    rows = read_metrics(stage / "logs")
    start = next(r for r in rows if r["step"] == 0 and "val/preference_loss" in r)
    assert start["val/preference_loss"] == pytest.approx(0.6931, abs=1e-3)  # policy == reference: ln 2
    assert [r["step"] for r in rows if "train/accuracy" in r] == [1, 2]
    export(stage, 2, root)
