"""The output layer's log-softmax at the target ids, forward + backward: torch's composed ops vs `TargetLogSoftmax`.

For `positions` x vocabulary float32 logits (49152 = SmolLM2, 151936 = Qwen2.5), the median seconds of
one forward and backward of each, interleaved, after a warm-up, with torch's threads pinned to
`--threads`. Each repeat starts from logits freshly copied out of one source tensor, as a training step
gets them fresh from lm_head; the copy is not timed. "composed" is what the dtensor backend ran
before: `log_softmax(logits).gather(targets)`; "TargetLogSoftmax" is what it runs now, overwriting the
logits with their gradient as `chunk_logprobs` lets it. Writes benchmarks/results/target_log_softmax.json.

    python -m benchmarks.target_log_softmax [--repeats 7] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.timing import write_result
from reinforge.backends.training.dtensor.logprobs import TargetLogSoftmax

RESULTS = Path(__file__).resolve().parent / "results"


def composed(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits, dim=-1).gather(-1, targets[:, None]).squeeze(-1)


def fused(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return TargetLogSoftmax.apply(logits, targets, 1.0, True)


def measure(positions: int, vocab: int, repeats: int) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(0)
    source = torch.randn(positions, vocab, generator=generator) * 3
    targets = torch.randint(0, vocab, (positions,), generator=generator)
    upstream = torch.randn(positions, generator=generator)
    variants = {"composed": composed, "TargetLogSoftmax": fused}
    seconds: dict[str, list[float]] = {name: [] for name in variants}

    def once(fn: Any) -> float:
        leaf = torch.zeros((), requires_grad=True)
        logits = source + leaf  # fresh, and a non-leaf of the graph, as lm_head's output is
        start = time.perf_counter()
        fn(logits, targets).backward(upstream)
        return time.perf_counter() - start

    for fn in variants.values():
        once(fn)
    for _ in range(repeats):
        for name, fn in variants.items():
            seconds[name].append(once(fn))
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    return {
        "positions": positions,
        "vocab": vocab,
        "median_seconds": medians,
        "ratio_to_composed": medians["TargetLogSoftmax"] / medians["composed"],
        "all_seconds": seconds,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "target_log_softmax.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cases = [measure(positions, vocab, args.repeats) for positions, vocab in ((2048, 49152), (512, 151936), (2048, 151936))]
    print(f"{'positions':>9} {'vocab':>7} {'composed ms':>12} {'TargetLogSoftmax ms':>20} {'ratio':>6}")
    for case in cases:
        ms = {name: 1000 * value for name, value in case["median_seconds"].items()}
        print(f"{case['positions']:>9} {case['vocab']:>7} {ms['composed']:>12.1f} {ms['TargetLogSoftmax']:>20.1f} "
              f"{case['ratio_to_composed']:>6.2f}")  # fmt: skip
    write_result(args.out, "forward + backward of the head's log-softmax at the targets: composed torch ops vs TargetLogSoftmax",
                 args.threads, repeats=args.repeats, cases=cases)


if __name__ == "__main__":
    main()
