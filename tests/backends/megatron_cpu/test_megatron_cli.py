"""The CPU recipes through the `reinforge` command with `policy.backend=megatron`: GRPO (the demo recipe), SFT, DPO.

The command runs as a user would run it, except that `shimmed_cli.py` installs the test-only
CPU shim first (Megatron-core assumes CUDA). Each recipe runs a few steps on the tiny model; the
GRPO run also saves a checkpoint that `reinforge convert` turns into a Hugging Face folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.grpo_helpers import CPU_RECIPE, OFFLINE_ENV, REPO, read_metrics, tiny_overrides

pytestmark = pytest.mark.integration

CLI = Path(__file__).with_name("shimmed_cli.py")
CONFIGS = REPO / "examples" / "configs"
ARITH_DATA = "{split: train, num_samples: 40, num_validation_samples: 8, max_operand: 10}"
ARITH_VAL = "{split: validation, num_samples: 8, num_validation_samples: 8, max_operand: 10}"


def reinforge(*args: str, cwd: Path) -> str:
    env = {**os.environ, **OFFLINE_ENV, "OMP_NUM_THREADS": "1", "REINFORGE_CACHE": str(cwd / "cache")}
    done = subprocess.run([sys.executable, str(CLI), *args], capture_output=True, text=True, cwd=cwd, env=env)
    assert done.returncode == 0, f"reinforge {' '.join(args)}\n{done.stdout[-3000:]}\n{done.stderr[-4000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("megatron-cli")
    reinforge("model", "build", "--size", "tiny", "--out", str(root / "base"), cwd=root)
    return root


def _run_dirs(stage: Path) -> list[str]:
    return [f"checkpointing.checkpoint_dir={stage / 'ckpt'}", f"logger.log_dir={stage / 'logs'}", "logger.loggers=[jsonl]"]


def test_the_grpo_demo_recipe_runs_with_megatron_and_converts(root):
    stage = root / "grpo"
    overrides = tiny_overrides(root / "base", stage, steps=3, extra=("checkpointing.save_period=3",))
    reinforge("train", "--config", str(CPU_RECIPE), *overrides, "policy.backend=megatron",
              "policy.backend_cfg={logprob_chunk_size: 16}", cwd=root)  # fmt: skip
    rows = read_metrics(stage / "logs")
    steps = [r for r in rows if "train/loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    assert all(r["train/tokens"] > 0 and r["train/lr"] == pytest.approx(1e-4) for r in steps)
    meta = (stage / "ckpt" / "step_3" / "policy" / "reinforge_backend.json").read_text()
    assert '"backend": "megatron"' in meta
    policy = stage / "ckpt" / "step_3" / "policy"
    reinforge("convert", f"--dcp-ckpt-path={policy}", f"--hf-ckpt-path={stage / 'hf'}", cwd=root)
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (stage / "hf" / name).is_file(), name


def one_step_with_megatron(root: Path, algorithm: str, global_batch: int) -> list[dict]:
    """One step of examples/configs/ALGORITHM-arith-cpu.yaml with megatron, validated before and after; its metrics rows."""
    stage = root / algorithm
    reinforge(
        "train", "--config", str(CONFIGS / f"{algorithm}-arith-cpu.yaml"),
        f"policy.model_name={root / 'base'}", "policy.backend=megatron", "policy.backend_cfg=null",
        f"{algorithm}.max_num_steps=1", f"{algorithm}.val_period=0", f"{algorithm}.val_at_start=true",
        f"policy.train_global_batch_size={global_batch}", "policy.train_micro_batch_size=4", "policy.logprob_batch_size=8",
        f"data.dataset_cfg={ARITH_DATA}", f"data.val_dataset_cfg={ARITH_VAL}", *_run_dirs(stage),
        cwd=root,
    )  # fmt: skip
    return read_metrics(stage / "logs")


def test_one_sft_and_one_dpo_step_run_with_megatron(root):
    rows = one_step_with_megatron(root, "sft", global_batch=8)
    assert [r["step"] for r in rows if "train/loss" in r] == [1]
    assert sum("val/loss" in r for r in rows) == 2  # before the first step and after the last

    rows = one_step_with_megatron(root, "dpo", global_batch=4)
    start = next(r for r in rows if r["step"] == 0 and "val/preference_loss" in r)
    assert start["val/preference_loss"] == pytest.approx(0.6931, abs=1e-3)  # policy == reference: ln 2
    assert [r["step"] for r in rows if "train/accuracy" in r] == [1]
