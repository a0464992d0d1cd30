"""One sampling step of the `hf` backend: transformers' way (softmax + torch.multinomial) vs `TokenSampler`.

For `rows` x vocabulary logits (49152 = SmolLM2, 151936 = Qwen2.5), the median seconds of one step of
each, interleaved, after a warm-up, with torch's threads pinned to `--threads`. transformers' sampled
path is timed as `generate(do_sample=True)` runs it with top_k=0 and top_p=1 (softmax, then one
multinomial draw per row); `TokenSampler` as the backend runs it (temperature, filters, inverse CDF,
one-hot scores for the greedy argmax); both also with top_p=0.95 (each sorts the vocabulary; transformers
through its TopPLogitsWarper). Writes benchmarks/results/sampler.json.

    python -m benchmarks.sampler [--repeats 20] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from transformers import TopPLogitsWarper

from benchmarks.timing import write_result
from reinforge.backends.generation.hf.sampler import TokenSampler

RESULTS = Path(__file__).resolve().parent / "results"


def transformers_step(scores: torch.Tensor, generator: torch.Generator, top_p: float = 1.0) -> torch.Tensor:
    if top_p < 1.0:
        scores = TopPLogitsWarper(top_p)(None, scores)
    probs = torch.softmax(scores, dim=-1)
    next_tokens = torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)
    return next_tokens


def ours_step(sampler: TokenSampler, scores: torch.Tensor) -> torch.Tensor:
    return sampler(scores[:, :1].long(), scores).argmax(-1)


def measure(rows: int, vocab: int, repeats: int) -> dict[str, Any]:
    scores = torch.randn(rows, vocab, generator=torch.Generator().manual_seed(0)) * 3
    variants = {
        "transformers multinomial": lambda g: transformers_step(scores, g),
        "TokenSampler": lambda g, s=TokenSampler(1.0, None, 1.0, torch.Generator()): ours_step(s, scores),
        "transformers top_p=0.95": lambda g: transformers_step(scores, g, 0.95),
        "TokenSampler top_p=0.95": lambda g, s=TokenSampler(1.0, None, 0.95, torch.Generator()): ours_step(s, scores),
    }
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    generator = torch.Generator().manual_seed(1)
    for fn in variants.values():
        fn(generator)
    for _ in range(repeats):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn(generator)
            seconds[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    base, base_top_p = medians["transformers multinomial"], medians["transformers top_p=0.95"]
    return {
        "rows": rows,
        "vocab": vocab,
        "median_seconds": medians,
        # each of ours against transformers at the same filter
        "ratio_to_transformers": {
            "TokenSampler": medians["TokenSampler"] / base,
            "TokenSampler top_p=0.95": medians["TokenSampler top_p=0.95"] / base_top_p,
        },
        "all_seconds": seconds,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "sampler.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cases = [measure(rows, vocab, args.repeats) for rows in (32, 128) for vocab in (49152, 151936)]
    print(f"{'rows':>5} {'vocab':>7} {'transformers ms':>16} {'ours ms':>8} {'ratio':>6} {'top_p 0.95: transformers':>25} {'ours':>6} {'ratio':>6}")
    for case in cases:
        ms = {name: 1000 * value for name, value in case["median_seconds"].items()}
        ratio = case["ratio_to_transformers"]
        print(
            f"{case['rows']:>5} {case['vocab']:>7} {ms['transformers multinomial']:>16.1f} {ms['TokenSampler']:>8.1f} "
            f"{ratio['TokenSampler']:>6.2f} {ms['transformers top_p=0.95']:>25.1f} {ms['TokenSampler top_p=0.95']:>6.1f} "
            f"{ratio['TokenSampler top_p=0.95']:>6.2f}"
        )
    write_result(args.out, "one sampling step: transformers' softmax + multinomial vs the hf backend's TokenSampler",
                 args.threads, repeats=args.repeats, cases=cases)


if __name__ == "__main__":
    main()
