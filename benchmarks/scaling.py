"""GRPO step time with 1 and 2 training workers on this CPU, and the share of each step spent orchestrating.

Runs the CPU demo recipe (examples/configs/grpo-arith-cpu.yaml: 16 prompts x 8 samples, up to 40 new
tokens, `hf` generation, `dtensor` training, 2 optimizer steps per GRPO step) through `reinforge train`
on the kit's "small" model (~11 M, not warmed up), for a few steps, with validation and checkpoints
off, in three set-ups:

- `local`: the local executor (one process);
- `ray 1 worker`: the Ray executor, one training worker and one generation replica;
- `ray 2 workers`: the Ray executor, two FSDP training workers and one generation replica.

Every process uses one torch thread (see SETUPS), so the machine's two cores are used by the second
training worker only.

Per step it reads the trainer's timings and reports the step time and the orchestration share =
(timing/total - generation - reward - logprobs - training - refit - validation - checkpoint) / total:
the time spent outside the measured phases (data loading, advantages, metrics, sample logging; for
Ray, the driver's bookkeeping between calls). Calls into workers are inside the phases, so Ray's
transport cost counts as phase time, not as orchestration. Step 1 is dropped (warm-up, no refit).
Each repeat runs the three set-ups in turn (interleaved); medians over all kept steps of all repeats.
Writes benchmarks/results/scaling.json.

    .venv/bin/python benchmarks/scaling.py [--repeats 2] [--steps 5] [overrides...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
RECIPE = REPO / "examples" / "configs" / "grpo-arith-cpu.yaml"
PHASES = ("generation", "reward", "logprobs", "training", "refit", "validation", "checkpoint")
# One torch thread per process everywhere (OMP_NUM_THREADS=1 for the local run; cpus_per_worker=1 gives Ray
# workers one thread): two-thread OpenMP runs collapse 3-20x when another job takes a core on this shared
# machine, and with one thread each, "2 workers" is the honest question: does a second process on the
# second core help?
SETUPS: dict[str, list[str]] = {
    "local": ["cluster.executor=local"],
    "ray 1 worker": ["cluster.executor=ray", "cluster.training_workers=1", "cluster.cpus_per_worker=1",
                     "cluster.generation_cpus_per_worker=1", "cluster.local_num_cpus=8"],
    "ray 2 workers": ["cluster.executor=ray", "cluster.training_workers=2", "cluster.cpus_per_worker=1",
                      "cluster.generation_cpus_per_worker=1", "cluster.local_num_cpus=8"],
}
TARGETS = {"local": 0.05, "ray": 0.10}


def run_setup(model: Path, steps: int, extra: list[str], user: list[str], scratch: Path) -> tuple[list[dict[str, Any]], float]:
    """Train `steps` GRPO steps in a fresh process; the per-step metrics rows and the wall seconds."""
    logs = scratch / "logs"
    overrides = [
        f"policy.model_name={model}",
        f"grpo.max_num_steps={steps}",
        "grpo.val_period=0",
        "grpo.val_at_start=false",
        "grpo.val_at_end=false",
        "checkpointing.enabled=false",
        f"checkpointing.checkpoint_dir={scratch / 'ckpt'}",
        f"logger.log_dir={logs}",
        "logger.loggers=[jsonl]",
        *extra,
        *user,
    ]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "reinforge.cli.main", "train", "--config", str(RECIPE), *overrides],
                   check=True, env=env, cwd=REPO, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    rows = [json.loads(line) for line in (logs / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in rows if "timing/total" in r], wall


def orchestration_share(row: dict[str, Any]) -> float:
    total = row["timing/total"]
    return (total - sum(row.get(f"timing/{phase}", 0.0) for phase in PHASES)) / total


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    kept = [r for r in rows if r["step"] > 1]
    phases = {phase: statistics.median(r.get(f"timing/{phase}", 0.0) for r in kept) for phase in PHASES}
    return {
        "steps_kept": len(kept),
        "step_seconds": statistics.median(r["timing/total"] for r in kept),
        "orchestration_share": statistics.median(orchestration_share(r) for r in kept),
        "orchestration_seconds": statistics.median(orchestration_share(r) * r["timing/total"] for r in kept),
        "phase_seconds": {k: v for k, v in phases.items() if v > 0},
        "per_step": [{"step": r["step"], "total": r["timing/total"], "share": orchestration_share(r),
                      **{p: r[f"timing/{p}"] for p in PHASES if f"timing/{p}" in r}} for r in rows],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="runs of each set-up, interleaved")
    parser.add_argument("--steps", type=int, default=5, help="GRPO steps per run (step 1 is dropped)")
    parser.add_argument("--setups", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("overrides", nargs="*", help="extra dotted overrides for every run")
    args = parser.parse_args()

    from reinforge.testing import build_model

    model = build_model(size="small")
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in args.setups}
    walls: dict[str, list[float]] = {name: [] for name in args.setups}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for name in args.setups:
                scratch = Path(tmp) / f"{name.replace(' ', '-')}-{repeat}"
                got, wall = run_setup(model, args.steps, SETUPS[name], args.overrides, scratch)
                rows[name].extend(got)
                walls[name].append(wall)
                print(f"  repeat {repeat + 1}/{args.repeats} {name}: {wall:.0f} s", flush=True)

    summary = {name: {**summarize(rows[name]), "run_wall_seconds": walls[name]} for name in args.setups}
    base = summary.get("local", {}).get("step_seconds")
    print(f"\nGRPO step on the CPU demo recipe (small model, 16 prompts x 8, {args.steps} steps, step 1 dropped), "
          f"medians over {args.repeats} interleaved repeat(s)")
    print(f"{'set-up':<14} {'step s':>7} {'vs local':>9} {'generation':>11} {'reward':>7} {'logprobs':>9} "
          f"{'training':>9} {'refit':>6} {'orchestration':>14} {'target':>7}")
    for name, entry in summary.items():
        phases = entry["phase_seconds"]
        target = TARGETS["local" if name == "local" else "ray"]
        entry["target_share"] = target
        entry["target_met"] = entry["orchestration_share"] < target
        speed = f"{base / entry['step_seconds']:.2f}x" if base else "-"
        print(f"{name:<14} {entry['step_seconds']:>7.2f} {speed:>9} {phases.get('generation', 0):>11.2f} "
              f"{phases.get('reward', 0):>7.2f} {phases.get('logprobs', 0):>9.2f} {phases.get('training', 0):>9.2f} "
              f"{phases.get('refit', 0):>6.3f} {entry['orchestration_share']:>13.1%} {'<' + format(target, '.0%'):>4} "
              f"{'met' if entry['target_met'] else 'MISSED'}")

    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "recipe": str(RECIPE.relative_to(REPO)), "model": "small", "steps": args.steps, "repeats": args.repeats,
        "overrides": args.overrides, "setups": {name: SETUPS[name] for name in args.setups}, "results": summary,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scaling.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {RESULTS / 'scaling.json'}")


if __name__ == "__main__":
    main()
