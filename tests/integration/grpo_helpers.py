"""Shared by the integration tests: overrides that shrink a GRPO recipe to the tiny model and a tiny
batch, and running the `reinforge` command as a user would and reading the metrics it logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CPU_RECIPE = REPO / "examples" / "configs" / "grpo-arith-cpu.yaml"
REINFORGE = str(Path(sys.executable).with_name("reinforge"))  # the console script of this environment
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
# Ray with one worker per group, not colocated: the layout asynchronous GRPO needs there (colocated is refused)
RAY_DISAGGREGATED = (
    "cluster.executor=ray", "cluster.cpus_per_worker=0.5", "cluster.colocated=false", "cluster.training_workers=1",
    "cluster.generation_workers=1", "cluster.environment_workers=1",
)  # fmt: skip


def run_reinforge(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    """Run `reinforge ARGS` offline in a subprocess (`env` adds variables); fail the test with its output."""
    done = subprocess.run(
        [REINFORGE, *args], capture_output=True, text=True, cwd=cwd, env={**os.environ, **OFFLINE_ENV, **(env or {})}
    )
    assert done.returncode == 0, f"reinforge {' '.join(args)}\n{done.stdout[-3000:]}\n{done.stderr[-4000:]}"
    return done.stdout


def read_metrics(log_dir: Path) -> list[dict]:
    """The rows of a run's metrics.jsonl."""
    return [json.loads(line) for line in (log_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def tiny_overrides(model_dir: Path, out: Path, *, steps: int = 2, extra: tuple[str, ...] = ()) -> list[str]:
    return [
        f"policy.model_name={model_dir}",
        "policy.precision=float32",
        "policy.generation.backend=hf",
        "policy.generation.backend_cfg=null",
        "policy.backend_cfg=null",
        "policy.train_global_batch_size=8",
        "policy.train_micro_batch_size=4",
        "policy.logprob_batch_size=8",
        "policy.max_total_sequence_length=96",
        "policy.generation.max_new_tokens=12",
        "policy.optimizer.lr=1.0e-4",
        "policy.scheduler.name=constant",
        "grpo.num_prompts_per_step=2",
        "grpo.num_generations_per_prompt=4",
        f"grpo.max_num_steps={steps}",
        "grpo.val_period=0",
        "grpo.val_at_start=false",
        "grpo.max_val_samples=4",
        "grpo.val_num_generations_per_prompt=1",
        "data.dataset=arithmetic",
        "data.dataset_cfg={split: train, num_samples: 40, num_validation_samples: 8}",
        "data.val_dataset=arithmetic",
        "data.val_dataset_cfg={split: validation, num_samples: 4, num_validation_samples: 8}",
        "data.max_input_seq_length=64",
        "env.name=math",
        "env.env_cfg={num_workers: 1}",
        "cluster.executor=local",
        "cluster.training_workers=1",  # recipes for clusters ask for more; the local executor refuses that
        f"checkpointing.checkpoint_dir={out / 'ckpt'}",
        f"logger.log_dir={out / 'logs'}",
        "logger.loggers=[jsonl]",
        *extra,
    ]
