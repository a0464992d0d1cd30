"""Running one framework for one run (a child process) and reading back its per-step phases.

Each run is a fresh process with its thread count pinned (OMP_NUM_THREADS / MKL_NUM_THREADS and
torch.set_num_threads), timed from its own step boundaries, with its peak RSS taken from the
kernel (`os.wait4`). Phases are named alike on both sides: generation, reward, logprobs, training,
refit, total (seconds per step).

Allocator: reinforge's dtensor backend tunes glibc's malloc inside its process (`keep_freed_memory`, on by
default; reinforge/backends/training/cpu_allocator.py). TRL's process gets the same settings through
GLIBC_TUNABLES (`trl_env`, allocator "tuned"), spelled from the same list, unless the allocator is "default".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from benchmarks.harness.workload import Workload
from reinforge.backends.training.cpu_allocator import glibc_tunables

REPO = Path(__file__).resolve().parents[2]
PHASES = ("generation", "reward", "logprobs", "training", "refit")
# TRL's allocator: tuned = reinforge's malloc settings through GLIBC_TUNABLES; default = glibc's (the old harness)
TRL_ALLOCATORS = ("tuned", "default")


def thread_env(threads: int) -> dict[str, str]:
    pinned = {name: str(threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    return {**os.environ, **pinned, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def trl_env(threads: int, allocator: str) -> dict[str, str]:
    """thread_env, and with allocator "tuned" reinforge's malloc settings as GLIBC_TUNABLES (after any inherited
    tunables, so ours win)."""
    if allocator not in TRL_ALLOCATORS:
        raise ValueError(f"unknown TRL allocator {allocator!r}; known: {', '.join(TRL_ALLOCATORS)}")
    env = thread_env(threads)
    if allocator == "tuned":
        env["GLIBC_TUNABLES"] = ":".join(t for t in (env.get("GLIBC_TUNABLES"), glibc_tunables()) if t)
    return env


def run_child(command: list[str], env: dict[str, str], log: Path) -> int:
    """Run `command`, output to `log`; returns its peak RSS in bytes; raises with the log's tail on failure."""
    with log.open("w") as out:
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise RuntimeError(f"{' '.join(command[:4])} ... failed (exit {child.returncode}); log {log}:\n{tail}")
    return int(usage.ru_maxrss) * 1024  # Linux reports KiB


# ---------------------------------------------------------------------- reinforge
def reinforge_config(workload: Workload, scratch: Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """A GRPO config equal to TRL's defaults as the harness sets them: one optimizer step per step, no KL,
    token-level loss, group-normalised rewards without a leave-one-out baseline, fp32, constant lr."""
    rows = workload.rows
    config: dict[str, Any] = {
        "algorithm": "grpo",
        "grpo": {
            "num_prompts_per_step": workload.prompts_per_step,
            "num_generations_per_prompt": workload.generations,
            "max_num_steps": workload.steps,
            "normalize_rewards": True,
            "use_leave_one_out_baseline": False,
            "val_period": 0,
            "val_at_start": False,
            "val_at_end": False,
            "seed": workload.seed,
        },
        "loss_fn": {
            "ratio_clip_min": 0.2,
            "ratio_clip_max": 0.28,
            "reference_policy_kl_penalty": 0.0,
            "token_level_loss": True,
            "force_on_policy_ratio": True,  # one optimizer step per rollout batch: the ratio is 1 (TRL skips it too)
        },
        "policy": {
            "model_name": workload.model_dir,
            "precision": "float32",
            "train_global_batch_size": rows,
            "train_micro_batch_size": workload.micro_rows,  # TRL's per_device_train_batch_size
            "logprob_batch_size": rows,
            "max_total_sequence_length": workload.max_total_sequence_length,
            "max_grad_norm": 1.0,
            "optimizer": {"name": "adamw", "lr": workload.lr, "weight_decay": 0.0, "betas": [0.9, 0.999], "eps": 1e-8},
            "scheduler": {"name": "constant"},
            "backend": "dtensor",
            "generation": {"backend": "hf", "max_new_tokens": workload.new_tokens, "temperature": 1.0, "top_p": 1.0},
        },
        "data": {
            "dataset": "jsonl",
            "dataset_cfg": {"path": workload.records, "input_key": "problem", "output_key": "answer"},
            "val_dataset": None,
            "prompt_file": None,  # the raw problem as the user message, as TRL gets it
            "system_prompt": workload.system_prompt,
            "max_input_seq_length": workload.max_total_sequence_length - workload.new_tokens,
            "shuffle": False,
        },
        "env": {"name": "math", "env_cfg": {"num_workers": 1, "require_boxed": True}},
        "checkpointing": {"enabled": False, "checkpoint_dir": str(scratch / "ckpt")},
        "logger": {"log_dir": str(scratch / "logs"), "loggers": ["jsonl"], "num_samples_to_log": 0},
        "cluster": {"executor": "local"},
    }
    for dotted, value in (overrides or {}).items():
        node = config
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return config


def reinforge_allocator(policy: dict[str, Any]) -> str:
    """How a reinforge config's `policy` leaves glibc's malloc: tuned by the dtensor backend (keep_freed_memory) or not."""
    if policy["backend"] != "dtensor":
        return "glibc defaults"
    from reinforge.backends.training.dtensor.config import DTensorConfig

    options = DTensorConfig(**policy.get("backend_cfg", {}))  # its own default where the config says nothing
    return "mallopt (keep_freed_memory)" if options.keep_freed_memory else "glibc defaults"


def trl_allocator(allocator: str) -> str:
    """The same label for TRL's process under `trl_env(..., allocator)`."""
    return "GLIBC_TUNABLES (reinforge's mallopt values)" if allocator == "tuned" else "glibc defaults"


def reinforge_steps(metrics_path: Path) -> list[dict[str, float]]:
    """Per training step from metrics.jsonl: the phases, new tokens and mean reward."""
    steps = []
    for line in metrics_path.read_text().splitlines():
        row = json.loads(line) if line.strip() else {}
        if "timing/total" not in row or "train/reward_mean" not in row:
            continue
        step = {phase: float(row.get(f"timing/{phase}", 0.0)) for phase in PHASES}
        step["total"] = float(row["timing/total"])
        step["reward_mean"] = float(row["train/reward_mean"])
        for key in ("train/response_length_mean", "train/mean_prompt_length", "train/num_rollouts",
                    "train/memory_estimate_bytes",  # the estimate: first step only
                    "train/positions", "train/head_positions"):  # what the dtensor backend computed
            if key in row:
                step[key.removeprefix("train/")] = float(row[key])
        steps.append(step)
    return steps


def run_reinforge(
    workload: Workload, scratch: Path, python: str = sys.executable, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    scratch.mkdir(parents=True, exist_ok=True)
    config_path = scratch / "config.yaml"
    config_path.write_text(yaml.safe_dump(reinforge_config(workload, scratch, overrides), sort_keys=False))
    command = [python, "-m", "reinforge.cli.main", "train", "--config", str(config_path)]
    env = thread_env(workload.threads)
    rss = run_child(command, env, scratch / "log.txt")
    return {"steps": reinforge_steps(scratch / "logs" / "metrics.jsonl"), "peak_rss_bytes": rss}


# ---------------------------------------------------------------------- TRL
def run_trl(workload: Workload, scratch: Path, python: str, allocator: str = "tuned") -> dict[str, Any]:
    scratch.mkdir(parents=True, exist_ok=True)
    out = scratch / "steps.json"
    command = [python, "-m", "benchmarks.harness.trl_side", str(Path(workload.records).parent / "workload.json"), str(out)]
    rss = run_child(command, trl_env(workload.threads, allocator), scratch / "log.txt")
    return {"steps": json.loads(out.read_text()), "peak_rss_bytes": rss}
