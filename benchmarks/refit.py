"""Refit cost: pushing the trainer's weights into the generator, local vs through the Ray object store.

For two models — the kit's "small" preset (~11 M parameters) and a ~100 M-parameter Qwen2
config built here — it measures one full refit (`named_weights` buckets -> `update_weights`, as
GRPO does) in seconds and GB/s:

- `torch copy`: `dst.copy_(src)` of the same tensors into preallocated ones (the floor: one memory copy);
- `local`: the `dtensor` trainer and `hf` generator in this process (the local executor);
- `ray 1 rank`: one training worker and one generation replica on a local Ray; each bucket is
  written to the object store once by the trainer and read (mapped, not copied) by the replica;
- `ray 2 ranks`: the same with two FSDP ranks, so every tensor is first all-gathered over gloo;
- `ray collective` (small model): one training worker and one replica with
  `cluster.refit_transport: collective`: each bucket is copied into one flat buffer and broadcast
  over a gloo group of trainer rank 0 and the replica, never touching the object store.

Ray rows also split the time into gathering + storing/staging (trainer side) and loading (replica side).
Best of `--repeats` refits after one warm-up (the machine is shared: the best run is the least
disturbed one; medians are in the JSON too). Writes benchmarks/results/refit.json.

    .venv/bin/python benchmarks/refit.py [--repeats 5] [--bucket-mb 256] [--models small]
(`--models small` writes benchmarks/results/refit-small.json instead, leaving the full table alone.)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from reinforge.backends.generation.hf.backend import HFGenerationBackend
from reinforge.backends.generation.hf.config import HFGenerationConfig
from reinforge.backends.training.dtensor.backend import DTensorBackend
from reinforge.core.registry import Registry
from reinforge.core.run_config import ClusterConfig, PolicyConfig
from reinforge.testing import build_model, build_tokenizer

RESULTS = Path(__file__).resolve().parent / "results"


def build_100m(directory: Path) -> Path:
    """A ~104 M-parameter Qwen2 (hidden 768, 12 layers, 12/4 heads, MLP 3072) with the kit's tokenizer."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from reinforge.models.tiny_model import model_config

    tokenizer = build_tokenizer()
    small = model_config("small", tokenizer)
    config = Qwen2Config(
        vocab_size=small.vocab_size,
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        eos_token_id=small.eos_token_id,
        pad_token_id=small.pad_token_id,
    )
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def timed(fn: Any, repeats: int) -> dict[str, float]:
    """Best and median seconds of `repeats` calls after a warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"seconds": min(times), "median_seconds": statistics.median(times)}


def refit_once(trainer: Any, generator: Any, bucket_bytes: int) -> int:
    moved = 0
    for bucket in trainer.named_weights(bucket_bytes):
        moved += sum(t.numel() * t.element_size() for _, t in bucket)
        generator.update_weights(bucket)
    return moved


def bench_model(model_dir: Path, repeats: int, bucket_bytes: int, collective: bool = False) -> list[dict[str, Any]]:
    policy = PolicyConfig(model_name=str(model_dir), max_total_sequence_length=256)
    rows = []

    trainer = DTensorBackend(policy)
    generator = HFGenerationBackend(policy, HFGenerationConfig(device="cpu"))
    sources = [t for bucket in trainer.named_weights(bucket_bytes) for _, t in bucket]
    targets = [torch.empty_like(t) for t in sources]
    nbytes = sum(t.numel() * t.element_size() for t in sources)

    def plain_copy() -> None:
        for dst, src in zip(targets, sources):
            dst.copy_(src)

    rows.append({"method": "torch copy", **timed(plain_copy, repeats)})
    rows.append({"method": "local", **timed(lambda: refit_once(trainer, generator, bucket_bytes), repeats)})
    del trainer, generator, sources, targets

    for ranks in (1, 2):
        rows.append(bench_ray(policy, ranks, repeats, bucket_bytes))
    if collective:
        rows.append(bench_ray(policy, 1, repeats, bucket_bytes, transport="collective"))
    for row in rows:
        row.update(bytes=nbytes, gb_per_s=nbytes / 1e9 / row["seconds"])
    return rows


def bench_ray(
    policy: PolicyConfig, ranks: int, repeats: int, bucket_bytes: int, transport: str = "object_store"
) -> dict[str, Any]:
    from reinforge.executors.ray.executor import RayExecutor

    cluster = ClusterConfig(executor="ray", training_workers=ranks, cpus_per_worker=2 / ranks, generation_cpus_per_worker=2,
                            local_num_cpus=8, refit_transport=transport)
    executor = RayExecutor(cluster, Registry.create())
    try:
        trainer = executor.training(policy, need_reference=False, seed=0)
        generator = executor.generation(policy.model, policy.generation, seed=0)
        trainer.group.ready()
        generator.group.ready()
        refit_once(trainer, generator, bucket_bytes)  # warm-up
        executor.refit_stats.pop()
        times, stats = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            refit_once(trainer, generator, bucket_bytes)
            times.append(time.perf_counter() - start)
            stats.append(executor.refit_stats.pop())
        best = stats[times.index(min(times))]
        return {
            "method": "ray collective" if transport == "collective" else f"ray {ranks} rank{'s' if ranks > 1 else ''}",
            "seconds": min(times),
            "median_seconds": statistics.median(times),
            "buckets": int(best["refit/buckets"]),
            "gather_store_seconds": best["refit/gather_seconds"],
            "load_seconds": best["refit/load_seconds"],
        }
    finally:
        executor.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--bucket-mb", type=float, default=256.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", choices=("all", "small"), default="all", help="small: only the ~11M model")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    bucket_bytes = int(args.bucket_mb * 2**20)

    results: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__, "threads": args.threads},
        "bucket_mb": args.bucket_mb,
        "repeats": args.repeats,
        "models": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        models = {"small (~11M)": build_model(Path(tmp) / "small", size="small")}
        if args.models == "all":
            models["qwen2 ~100M"] = build_100m(Path(tmp) / "m100")
        for name, folder in models.items():
            rows = bench_model(folder, args.repeats, bucket_bytes, collective=name.startswith("small"))
            results["models"][name] = {"parameters_bytes": rows[0]["bytes"], "rows": rows}

    print(f"\nrefit, best of {args.repeats} (bucket {args.bucket_mb:g} MB, {args.threads} threads)")
    print(f"{'model':<14} {'method':<14} {'MB':>8} {'seconds':>9} {'GB/s':>7} {'gather+store s':>15} {'load s':>8}")
    for name, entry in results["models"].items():
        for row in entry["rows"]:
            gather = f"{row['gather_store_seconds']:.3f}" if "gather_store_seconds" in row else ""
            load = f"{row['load_seconds']:.3f}" if "load_seconds" in row else ""
            print(f"{name:<14} {row['method']:<14} {row['bytes'] / 1e6:>8.1f} {row['seconds']:>9.3f} "
                  f"{row['gb_per_s']:>7.2f} {gather:>15} {load:>8}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / ("refit.json" if args.models == "all" else "refit-small.json")
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
