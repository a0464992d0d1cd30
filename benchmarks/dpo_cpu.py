"""The CPU DPO recipe as a measurement: the validation preference-accuracy curve and the wall time, as JSON.

Builds the recipe's starting model (`reinforge model build --demo`, cached in the reinforge model cache),
runs `reinforge train` on examples/configs/dpo-arith-cpu.yaml into a scratch folder, and reports: model
build and training wall time, median seconds per step, validation accuracy / preference loss / reward
margin per validation step, and the mean training accuracy over the first and last 10 steps.
Writes benchmarks/results/dpo_cpu.json.

    .venv/bin/python benchmarks/dpo_cpu.py [overrides...]
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
RECIPE = REPO / "examples" / "configs" / "dpo-arith-cpu.yaml"


def main() -> None:
    cli = [sys.executable, "-m", "reinforge.cli.main"]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}  # 1 thread: steadier on a shared CPU
    with tempfile.TemporaryDirectory() as scratch:
        model = Path(scratch) / "model"
        started = time.perf_counter()
        subprocess.run([*cli, "model", "build", "--demo", "--out", str(model)], check=True, env=env)
        built = time.perf_counter()
        logs = Path(scratch) / "logs"
        overrides = [f"policy.model_name={model}", f"logger.log_dir={logs}", f"checkpointing.checkpoint_dir={Path(scratch) / 'ckpt'}"]
        subprocess.run([*cli, "train", "--config", str(RECIPE), *overrides, *sys.argv[1:]], check=True, env=env)
        finished = time.perf_counter()
        rows = [json.loads(line) for line in (logs / "metrics.jsonl").read_text().splitlines() if line.strip()]
    train = [r for r in rows if "train/accuracy" in r]
    val = [r for r in rows if "val/accuracy" in r]
    result = {
        "recipe": str(RECIPE.relative_to(REPO)),
        "overrides": sys.argv[1:],
        "omp_num_threads": env["OMP_NUM_THREADS"],
        "model_build_seconds": built - started,
        "train_seconds": finished - built,
        "median_step_seconds": statistics.median(r["timing/total"] for r in train),
        "steps": len(train),
        "train_accuracy_first10": statistics.fmean(r["train/accuracy"] for r in train[:10]),
        "train_accuracy_last10": statistics.fmean(r["train/accuracy"] for r in train[-10:]),
        "val_accuracy": {r["step"]: r["val/accuracy"] for r in val},
        "val_preference_loss": {r["step"]: r["val/preference_loss"] for r in val},
        "val_reward_margin": {r["step"]: r["val/reward_margin"] for r in val},
    }
    print(f"model build {result['model_build_seconds']:.0f} s, training {result['train_seconds']:.0f} s "
          f"({result['steps']} steps, median {result['median_step_seconds']:.2f} s/step)")
    print("validation accuracy: " + ", ".join(f"step {s}: {a:.3f}" for s, a in result["val_accuracy"].items()))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "dpo_cpu.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
