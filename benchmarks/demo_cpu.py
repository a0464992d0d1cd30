"""The CPU demo as a measurement: wall time, and the reward and validation curves, as JSON.

Builds the demo model (cached), runs `reinforge train` on examples/configs/grpo-arith-cpu.yaml into a
scratch folder, and reports: total wall time, seconds per step (median), mean training reward over the
first and last 10 steps, validation accuracy per validation step. Writes benchmarks/results/demo_cpu.json.

    .venv/bin/python benchmarks/demo_cpu.py [overrides...]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
MODEL = ["--demo"]  # the model scripts/demo.sh builds (reinforge.cli.model_cmd.DEMO_MODEL)


def main() -> None:
    cli = [sys.executable, "-m", "reinforge.cli.main"]
    with tempfile.TemporaryDirectory() as scratch:
        model = Path(scratch) / "model"
        started = time.perf_counter()
        # A fresh model cache, so the build is timed as a new user's first run pays it.
        env = {**os.environ, "REINFORGE_CACHE": str(Path(scratch) / "cache")}
        subprocess.run([*cli, "model", "build", *MODEL, "--out", str(model)], check=True, env=env)
        built = time.perf_counter()
        logs = Path(scratch) / "logs"
        overrides = [f"policy.model_name={model}", f"logger.log_dir={logs}", f"checkpointing.checkpoint_dir={Path(scratch) / 'ckpt'}"]
        subprocess.run([*cli, "train", "--config", str(REPO / "examples/configs/grpo-arith-cpu.yaml"), *overrides, *sys.argv[1:]], check=True)
        finished = time.perf_counter()
        rows = [json.loads(line) for line in (logs / "metrics.jsonl").read_text().splitlines() if line.strip()]
    train = [r for r in rows if "train/reward_mean" in r]
    rewards = [r["train/reward_mean"] for r in train]
    result = {
        "model_build_seconds": built - started,
        "train_seconds": finished - built,
        "median_step_seconds": statistics.median(r["timing/total"] for r in train),
        "total_seconds": finished - started,
        "steps": len(train),
        "reward_first10": statistics.fmean(rewards[:10]),
        "reward_last10": statistics.fmean(rewards[-10:]),
        "reward_curve": rewards,
        "val_accuracy": {r["step"]: r["val/accuracy"] for r in rows if "val/accuracy" in r},
    }
    print(f"total {result['total_seconds']:.0f} s: model build {result['model_build_seconds']:.0f} s, training {result['train_seconds']:.0f} s "
          f"({result['steps']} steps, median {result['median_step_seconds']:.1f} s/step)")
    print(f"mean reward: first 10 steps {result['reward_first10']:.3f}, last 10 steps {result['reward_last10']:.3f}")
    print("validation accuracy: " + ", ".join(f"step {s}: {a:.3f}" for s, a in result["val_accuracy"].items()))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "demo_cpu.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
