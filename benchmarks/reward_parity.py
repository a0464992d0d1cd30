"""Does reinforge learn as well as TRL per sample? Paired reward curves over seeds, with a 95 % interval.

    python -m benchmarks.reward_parity --seeds 12 --runs /tmp/reward-runs \
        --out benchmarks/results/reward_parity_demo.json

Each seed is one `python -m benchmarks.run --pairs 1 --warmup 0` (reinforge and TRL at equal work, on the
same problems in the same order for that seed), written to RUNS/seed<N>.json. A seed whose JSON is already
there with the same settings is read, not run again, so an interrupted sweep resumes. Reported: per seed, both
frameworks' mean training reward over all steps and over the last `--last` steps; the mean over seeds of the
difference (reinforge - TRL) with its 95 % Student-t interval; wins/losses; and non-inferiority, which holds
when the interval's lower end is above -`--margin` (set before the runs: 0.02 by default, a tenth of the demo
model's starting reward). The step-by-step curves averaged over seeds are in the JSON. Timings in the per-seed
files are not comparable across seeds when the machine was shared; the rewards are (sampling is seeded).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import paired
from benchmarks.harness.sides import REPO

RESULTS = REPO / "benchmarks" / "results"
# The settings that make two seed files the same experiment; the seed itself is checked separately.
SAME = ("model", "prompts", "generations", "new_tokens", "steps", "warmup", "lr", "threads", "max_length")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reward_parity", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=12, help="seeds 0..N-1 (or --first-seed onwards)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--runs", required=True, help="folder of the per-seed JSONs (read when present, else written)")
    parser.add_argument("--model", default="demo")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--trl-python", help="the Python with trl installed (passed to benchmarks.run)")
    parser.add_argument("--last", type=int, default=5, help="also compare the mean of the last N steps")
    parser.add_argument("--margin", type=float, default=0.02, help="non-inferiority margin in reward")
    parser.add_argument("--out", help="JSON path (default benchmarks/results/reward_parity_<model>.json)")
    return parser.parse_args(argv)


def settings(args: argparse.Namespace) -> dict[str, Any]:
    return {"model": args.model, "prompts": args.prompts, "generations": args.generations,
            "new_tokens": args.new_tokens, "steps": args.steps, "warmup": 0, "lr": args.lr, "threads": args.threads,
            "max_length": args.max_length}  # fmt: skip


def run_seed(args: argparse.Namespace, seed: int, out: Path) -> None:
    s = settings(args)
    command = [sys.executable, "-m", "benchmarks.run", "--model", s["model"], "--pairs", "1", "--warmup", "0",
               "--steps", str(s["steps"]), "--prompts", str(s["prompts"]), "--generations", str(s["generations"]),
               "--new-tokens", str(s["new_tokens"]), "--lr", str(s["lr"]), "--threads", str(s["threads"]),
               "--max-length", str(s["max_length"]), "--seed", str(seed), "--out", str(out)]  # fmt: skip
    if args.trl_python:
        command += ["--trl-python", args.trl_python]
    print(f"seed {seed}: {' '.join(command[1:])}", flush=True)
    subprocess.run(command, check=True, cwd=REPO)


def read_seed(path: Path, seed: int, wanted: dict[str, Any]) -> tuple[dict[str, list[float]], dict[str, str]]:
    """The reward curves and versions of a seed file, after checking it is this experiment (an error names what
    differs)."""
    doc = json.loads(path.read_text())
    config = doc.get("config", {})
    differ = {k: (config.get(k), v) for k, v in wanted.items() if config.get(k) != v}
    if config.get("seed") != seed:
        differ["seed"] = (config.get("seed"), seed)
    if config.get("pairs") != 1:
        differ["pairs"] = (config.get("pairs"), 1)
    if differ:
        shown = ", ".join(f"{k} {have!r} (wanted {want!r})" for k, (have, want) in differ.items())
        raise SystemExit(
            f"{path} is a different experiment: {shown}. Use another --runs folder, or delete the file so that this "
            "seed runs again with the settings asked for."
        )
    curves = {name: f["reward_curve"] for name, f in doc["frameworks"].items()}
    if "trl" not in curves:
        raise SystemExit(f"{path} has no TRL run (TRL was not installed when it ran): delete it, install TRL with "
                         "`bash scripts/install_bench.sh`, and run again.")  # fmt: skip
    return curves, doc.get("versions", {})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.seeds < 2:
        raise SystemExit(f"--seeds {args.seeds}: a paired interval needs at least 2 seeds")
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    wanted = settings(args)
    curves: dict[str, dict[int, list[float]]] = {"reinforge": {}, "trl": {}}
    versions: dict[int, Any] = {}
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        path = runs / f"seed{seed}.json"
        if not path.exists():
            run_seed(args, seed, path)
        seed_curves, versions[seed] = read_seed(path, seed, wanted)
        for name, curve in seed_curves.items():
            curves.setdefault(name, {})[seed] = curve
    result = paired.summary(curves, "reinforge", "trl", last=args.last, margin=args.margin)
    doc = {"settings": wanted, "margin": args.margin, "versions_per_seed": versions,
           "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **result}  # fmt: skip
    out = Path(args.out) if args.out else RESULTS / f"reward_parity_{Path(args.model).name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1))
    print_table(doc)
    print(f"wrote {out}")
    return 0


def print_table(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    windows = ("all_steps", f"last_{doc['last']}")
    table = Table(title=f"mean training reward per seed, reinforge vs TRL ({doc['settings']['steps']} steps)")
    table.add_column("seed")
    for window in windows:
        table.add_column(f"{window}: reinforge")
        table.add_column("TRL")
        table.add_column("difference")
    for i, seed in enumerate(doc["seeds"]):
        cells = [str(seed)]
        for window in windows:
            w = doc[window]
            cells += [f"{w['per_seed']['reinforge'][i]:.3f}", f"{w['per_seed']['trl'][i]:.3f}",
                      f"{w['difference']['differences'][i]:+.3f}"]  # fmt: skip
        table.add_row(*cells)
    cells = ["mean [95 % CI]"]
    for window in windows:
        d = doc[window]["difference"]
        verdict = "non-inferior" if d["non_inferior"] else "not shown"
        cells += [f"{statistics.fmean(doc[window]['per_seed']['reinforge']):.3f}",
                  f"{statistics.fmean(doc[window]['per_seed']['trl']):.3f}",
                  f"{d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}] {d['wins']}W/{d['losses']}L, "
                  f"{verdict} at margin {d['margin']}"]  # fmt: skip
    table.add_row(*cells)
    Console(width=200).print(table)


if __name__ == "__main__":
    raise SystemExit(main())
