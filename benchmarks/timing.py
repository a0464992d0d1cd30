"""What the single-purpose benchmarks share: interleaved train steps, and writing their JSON.

The side-by-side harness (`benchmarks/run.py`) has its own machinery (processes, pairs); these are
for the in-process micro-benchmarks (`shared_prompts`, `microbatching`, `sampler`, `target_log_softmax`).
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from reinforge.core.batch import Batch
from reinforge.testing.conformance_training import ConformanceNLLLoss


def interleaved_train_steps(
    backends: Mapping[str, Any], batch: Batch, repeats: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Seconds and losses of `repeats` train steps of each backend on `batch`, in turn (A B A B ...).

    One warm-up round first, dropped. The same batch every time, so the losses show the work is equal.
    """
    seconds: dict[str, list[float]] = {name: [] for name in backends}
    losses: dict[str, list[float]] = {name: [] for name in backends}
    for repeat in range(repeats + 1):
        for name, backend in backends.items():
            start = time.perf_counter()
            metrics = backend.train(batch, ConformanceNLLLoss())
            elapsed = time.perf_counter() - start
            if repeat:
                seconds[name].append(elapsed)
                losses[name].append(metrics["loss"])
    return seconds, losses


def write_result(out: str | Path, what: str, threads: int, **fields: Any) -> dict[str, Any]:
    """`{"what", "date", "machine", **fields}` as JSON at `out` (folders made); says where; returns the document."""
    doc = {
        "what": what,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "threads": threads,
                    "torch": torch.__version__},  # fmt: skip
        **fields,
    }
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(doc, indent=1))
    print(f"wrote {out}")
    return doc
