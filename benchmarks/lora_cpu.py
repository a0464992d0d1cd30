"""Full fine-tuning against LoRA on CPU, side by side: step time, peak RSS, checkpoint size, held-out accuracy.

Two measurements, each side in its own process (peak RSS is per process):

- `recipe`: `reinforge train` on examples/configs/grpo-smollm2-arith-cpu.yaml (full) and
  grpo-smollm2-lora-cpu.yaml (LoRA), the same model, seed and data. Reports per side the median training
  phase (`timing/training`), the median step, the process's peak RSS, the size of the last checkpoint's
  policy/ folder, and the held-out accuracy at every validation; then the issue's criteria (LoRA's held-out
  gain >= 80 % of the full fine-tune's, peak RSS >= 1.2 GB lower, training phase <= 0.9x, checkpoint <= 5 %).
  About 2 x 18 min on 2 cores.
- `train`: the training step alone, on the recipe's policy settings and a synthetic GRPO-shaped batch
  (rows of one-shot-sized prompts and responses): each side in its own process for a few steps and one
  save (peak RSS, checkpoint size), then both sides in one process, steps interleaved, for the step time
  (on a shared machine, separate processes see different loads; pairs of adjacent steps see the same).
  A few minutes on SmolLM2.

    python benchmarks/lora_cpu.py recipe --model results/models/smollm2-135m-instruct [--steps 30] [overrides ...]
    python benchmarks/lora_cpu.py train --model results/models/smollm2-135m-instruct [--steps 3] [--pairs 3] [--rows 32]

Writes benchmarks/results/lora_cpu.json (`recipe`) or lora_cpu_train.json (`train`), unless --out says otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
RECIPES = {
    "full": REPO / "examples" / "configs" / "grpo-smollm2-arith-cpu.yaml",
    "lora": REPO / "examples" / "configs" / "grpo-smollm2-lora-cpu.yaml",
}
GB = 1e9


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


# --------------------------------------------------------------------------- recipe: two real runs
def run_recipe(side: str, model: str, steps: int | None, overrides: list[str], scratch: Path) -> dict[str, Any]:
    logs, ckpt = scratch / side / "logs", scratch / side / "ckpt"
    args = [f"policy.model_name={model}", f"logger.log_dir={logs}", "logger.loggers=[jsonl]",
            f"checkpointing.checkpoint_dir={ckpt}", "checkpointing.keep_top_k=null"]  # fmt: skip
    if steps is not None:
        args.append(f"grpo.max_num_steps={steps}")
    command = [sys.executable, "-m", "reinforge.cli.main", "train", "--config", str(RECIPES[side]), *args, *overrides]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    return read_recipe_run(side, logs, ckpt, time.perf_counter() - started)


def read_recipe_run(side: str, logs: Path, ckpt: Path, wall: float | None) -> dict[str, Any]:
    """One recipe run's figures, from its metrics.jsonl and its last checkpoint."""
    rows = [json.loads(line) for line in (logs / "metrics.jsonl").read_text().splitlines() if line.strip()]
    train = [r for r in rows if "train/loss" in r]
    val = {int(r["step"]): r["val/accuracy"] for r in rows if "val/accuracy" in r}
    saved = sorted(ckpt.glob("step_*"), key=lambda p: int(p.name.split("_")[1]))
    return {
        "recipe": str(RECIPES[side].relative_to(REPO)),
        "wall_seconds": wall,
        "steps": len(train),
        "median_step_seconds": statistics.median(r["timing/total"] for r in train),
        "median_training_seconds": statistics.median(r["timing/training"] for r in train),
        "peak_rss_bytes": max(r.get("train/memory_peak_rss_bytes", 0.0) for r in train),
        "memory_estimate_bytes": next((r["train/memory_estimate_bytes"] for r in train if "train/memory_estimate_bytes" in r), None),
        "checkpoint_bytes": folder_bytes(saved[-1] / "policy") if saved else None,
        "val_accuracy": val,
        "held_out_gain": (val[max(val)] - val[min(val)]) if len(val) > 1 else None,
    }


def criteria(full: dict[str, Any], lora: dict[str, Any], *, time_key: str, rss_key: str) -> dict[str, Any]:
    """The issue's targets, each with the measured value and whether it is met (None where not measured)."""
    out: dict[str, Any] = {
        "training_time_ratio": lora[time_key] / full[time_key],
        "peak_rss_saving_bytes": full[rss_key] - lora[rss_key],
    }
    out["training_time_ok"] = out["training_time_ratio"] <= 0.9
    out["peak_rss_ok"] = out["peak_rss_saving_bytes"] >= 1.2 * GB
    if full.get("checkpoint_bytes") and lora.get("checkpoint_bytes"):
        out["checkpoint_ratio"] = lora["checkpoint_bytes"] / full["checkpoint_bytes"]
        out["checkpoint_ok"] = out["checkpoint_ratio"] <= 0.05
    if full.get("held_out_gain") is not None and lora.get("held_out_gain") is not None:
        out["held_out_gain_ratio"] = lora["held_out_gain"] / full["held_out_gain"] if full["held_out_gain"] else None
        out["held_out_ok"] = full["held_out_gain"] > 0 and lora["held_out_gain"] >= 0.8 * full["held_out_gain"]
    return out


# --------------------------------------------------------------------------- train: the step alone
def train_side(side: str, model: str, steps: int, rows: int, prompt: int, response: int, threads: int) -> dict[str, Any]:
    """One side in this process: the recipe's policy (with or without its LoRA), `steps` train steps, one save."""
    import resource

    import attrs
    import torch

    from reinforge.algorithms.losses import NLLLoss

    torch.set_num_threads(threads)
    started = time.perf_counter()
    backend = _backend(side, model, rows)
    build = time.perf_counter() - started
    batch = _batch(backend.model.config.vocab_size, rows, prompt, response)
    seconds = []
    for _ in range(steps):
        begin = time.perf_counter()
        backend.train(batch, NLLLoss())
        seconds.append(time.perf_counter() - begin)
    with tempfile.TemporaryDirectory() as folder:
        backend.save(folder)
        checkpoint = folder_bytes(Path(folder))
    lora = backend.policy.lora
    return {
        "side": side,
        "lora": attrs.asdict(lora) if lora.enabled else None,
        "trainable_parameters": sum(p.numel() for p in backend.model.parameters() if p.requires_grad),
        "parameters": sum(p.numel() for p in backend.model.parameters()),
        "build_seconds": build,
        "step_seconds": seconds,
        "median_step_seconds": statistics.median(seconds[1:] or seconds),  # the first step creates the AdamW state
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "memory_estimate": backend.memory_estimate.as_dict(),
        "checkpoint_bytes": checkpoint,
    }


def _batch(vocab: int, rows: int, prompt: int, response: int) -> Any:
    """GRPO-shaped rows: one prompt shared by every row (as a group's samples), then the response tokens."""
    import torch

    from reinforge.core.batch import Batch

    generator = torch.Generator().manual_seed(0)
    width = prompt + response
    ids = torch.randint(3, vocab, (rows, width), generator=generator)  # [B, T]
    ids[:, :prompt] = ids[0, :prompt]
    token_mask = torch.zeros(rows, width)  # [B, T]
    token_mask[:, prompt:] = 1.0
    return Batch(input_ids=ids, input_lengths=torch.full((rows,), width), token_mask=token_mask)


def interleaved_steps(model: str, pairs: int, rows: int, prompt: int, response: int, threads: int) -> dict[str, Any]:
    """Both sides in this process, one train step of each in turn (after one warm-up step each): step seconds and ratios."""
    import torch

    from reinforge.algorithms.losses import NLLLoss

    torch.set_num_threads(threads)
    backends = {side: _backend(side, model, rows) for side in ("full", "lora")}
    batch = _batch(backends["full"].model.config.vocab_size, rows, prompt, response)
    seconds: dict[str, list[float]] = {side: [] for side in backends}
    for pair in range(pairs + 1):
        for side, backend in backends.items():
            begin = time.perf_counter()
            backend.train(batch, NLLLoss())
            if pair:
                seconds[side].append(time.perf_counter() - begin)
    ratios = [lora / full for full, lora in zip(seconds["full"], seconds["lora"])]
    return {"seconds": seconds, "ratios": ratios, "median_ratio": statistics.median(ratios)}


def _backend(side: str, model: str, rows: int) -> Any:
    import attrs

    from reinforge.backends.training.dtensor.backend import DTensorBackend
    from reinforge.core.load import load_config

    config = load_config(RECIPES[side], [f"policy.model_name={model}"])
    micro = min(rows, config.policy.train_micro_batch_size)
    policy = attrs.evolve(config.policy, train_global_batch_size=rows, train_micro_batch_size=micro)
    return DTensorBackend(policy.for_training(), policy.backend_cfg, need_reference=False, seed=0)


def run_train(args: argparse.Namespace) -> dict[str, Any]:
    sides = {}
    for side in ("full", "lora"):
        command = [sys.executable, __file__, "_side", side, "--model", args.model, "--steps", str(args.steps),
                   "--rows", str(args.rows), "--prompt", str(args.prompt), "--response", str(args.response),
                   "--threads", str(args.threads)]  # fmt: skip
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        sides[side] = json.loads(done.stdout.strip().splitlines()[-1])
    full, lora = sides["full"], sides["lora"]
    if args.pairs:
        command = [sys.executable, __file__, "_pairs", "--model", args.model, "--pairs", str(args.pairs), "--rows", str(args.rows),
                   "--prompt", str(args.prompt), "--response", str(args.response), "--threads", str(args.threads)]  # fmt: skip
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        interleaved = json.loads(done.stdout.strip().splitlines()[-1])
        full["interleaved_median_step_seconds"] = statistics.median(interleaved["seconds"]["full"])
        lora["interleaved_median_step_seconds"] = statistics.median(interleaved["seconds"]["lora"])
    else:
        interleaved = None
    time_key = "interleaved_median_step_seconds" if interleaved else "median_step_seconds"
    result = {"mode": "train", "model": args.model, "rows": args.rows, "prompt": args.prompt, "response": args.response,
              "threads": args.threads, "full": full, "lora": lora, "interleaved": interleaved,
              "criteria": criteria(full, lora, time_key=time_key, rss_key="peak_rss_bytes")}  # fmt: skip
    if interleaved:
        result["criteria"]["training_time_ratio"] = interleaved["median_ratio"]  # the median of per-pair ratios
        result["criteria"]["training_time_ok"] = interleaved["median_ratio"] <= 0.9
    result["criteria"]["checkpoint_ratio"] = lora["checkpoint_bytes"] / full["checkpoint_bytes"]
    result["criteria"]["checkpoint_ok"] = result["criteria"]["checkpoint_ratio"] <= 0.05
    return result


def run_recipes(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        sides = {side: run_recipe(side, args.model, args.steps, args.overrides, Path(scratch)) for side in ("full", "lora")}
    full, lora = sides["full"], sides["lora"]
    return {"mode": "recipe", "model": args.model, "overrides": args.overrides, "full": full, "lora": lora,
            "criteria": criteria(full, lora, time_key="median_training_seconds", rss_key="peak_rss_bytes")}  # fmt: skip


def recipes_from_logs(args: argparse.Namespace) -> dict[str, Any]:
    """The recipe comparison from two runs already made (each `reinforge train` of its recipe, unchanged but
    for output folders): for when one side was run on its own, e.g. after the other was interrupted."""
    sides = {}
    for side, folder, wall in (("full", args.full, args.full_wall), ("lora", args.lora, args.lora_wall)):
        sides[side] = read_recipe_run(side, folder / "logs", folder / "ckpt", wall)
        sides[side]["run_folder"] = str(folder)
    full, lora = sides["full"], sides["lora"]
    return {"mode": "recipe", "model": "smollm2-135m-instruct", "overrides": [], "from_logs": True, "note": args.note,
            "full": full, "lora": lora,
            "criteria": criteria(full, lora, time_key="median_training_seconds", rss_key="peak_rss_bytes")}  # fmt: skip


def print_table(result: dict[str, Any]) -> None:
    full, lora, crit = result["full"], result["lora"], result["criteria"]
    time_key = "median_training_seconds" if result["mode"] == "recipe" else "median_step_seconds"
    if result.get("interleaved"):
        time_key = "interleaved_median_step_seconds"
    print(f"{'':24}{'full':>14}{'LoRA':>14}")
    label = {"median_training_seconds": "training phase (s)", "interleaved_median_step_seconds": "train step, paired (s)"}
    print(f"{label.get(time_key, 'train step (s)'):24}{full[time_key]:>14.2f}{lora[time_key]:>14.2f}   "
          f"ratio {crit['training_time_ratio']:.2f}")  # fmt: skip
    print(f"{'peak RSS (GB)':24}{full['peak_rss_bytes'] / GB:>14.2f}{lora['peak_rss_bytes'] / GB:>14.2f}   "
          f"saved {crit['peak_rss_saving_bytes'] / GB:.2f} GB")  # fmt: skip
    if full.get("checkpoint_bytes") and lora.get("checkpoint_bytes"):
        print(f"{'checkpoint (MB)':24}{full['checkpoint_bytes'] / 1e6:>14.1f}{lora['checkpoint_bytes'] / 1e6:>14.1f}   "
              f"ratio {crit['checkpoint_ratio']:.3f}")  # fmt: skip
    if result["mode"] == "recipe":
        print(f"{'held-out accuracy':24}{json.dumps(full['val_accuracy'])}  vs  {json.dumps(lora['val_accuracy'])}")
    print("criteria: " + ", ".join(f"{k}={v}" for k, v in crit.items() if k.endswith("_ok")))


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    recipe = sub.add_parser("recipe", help="the two GRPO recipes end to end")
    recipe.add_argument("--model", required=True, help="the SmolLM2-135M-Instruct folder (reinforge model fetch ...)")
    recipe.add_argument("--steps", type=int, default=None, help="grpo.max_num_steps (default: the recipes' 30)")
    recipe.add_argument("--out", type=Path, default=RESULTS / "lora_cpu.json")
    recipe.add_argument("overrides", nargs="*", help="key=value overrides for both runs")
    logs = sub.add_parser("recipe-from-logs", help="the recipe comparison from two runs already made (folders with logs/ and ckpt/)")
    logs.add_argument("--full", type=Path, required=True)
    logs.add_argument("--lora", type=Path, required=True)
    logs.add_argument("--full-wall", type=float, default=None, help="the full run's wall seconds, where known")
    logs.add_argument("--lora-wall", type=float, default=None, help="the LoRA run's wall seconds, where known")
    logs.add_argument("--note", default="", help="how and when the two runs were made (kept in the JSON)")
    logs.add_argument("--out", type=Path, default=RESULTS / "lora_cpu.json")
    for name in ("train", "_side", "_pairs"):
        step = sub.add_parser(name, help="the training step alone" if name == "train" else argparse.SUPPRESS)
        if name == "_side":
            step.add_argument("side", choices=sorted(RECIPES))
        step.add_argument("--model", required=True)
        step.add_argument("--steps", type=int, default=3, help="steps of each side in its own process")
        step.add_argument("--pairs", type=int, default=3, help="interleaved (full, LoRA) step pairs for the time (0 = none)")
        step.add_argument("--rows", type=int, default=32, help="rollouts per step (the recipe: 8 prompts x 4)")
        step.add_argument("--prompt", type=int, default=100, help="prompt tokens (the recipe's one-shot prompt: ~100)")
        step.add_argument("--response", type=int, default=64, help="response tokens (the recipe's max_new_tokens)")
        step.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
        step.add_argument("--out", type=Path, default=RESULTS / "lora_cpu_train.json")
    args = parser.parse_args(argv)
    if args.mode == "_side":
        print(json.dumps(train_side(args.side, args.model, args.steps, args.rows, args.prompt, args.response, args.threads)))
        return None
    if args.mode == "_pairs":
        print(json.dumps(interleaved_steps(args.model, args.pairs, args.rows, args.prompt, args.response, args.threads)))
        return None
    runners = {"recipe": run_recipes, "recipe-from-logs": recipes_from_logs, "train": run_train}
    result = runners[args.mode](args)
    print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
