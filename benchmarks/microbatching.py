"""Training tokens/s of the dtensor backend's plans on natural-length rows: fixed, sorted, token_budget, packed.

Rows as rollouts come back: distinct prompts of 20-120 tokens, responses whose lengths are spread the
way sampling with an end-of-sequence token spreads them (most short, a few running to the limit:
lengths drawn log-uniformly in [8, max]). Every plan trains the same batch with the same policy
(`train_micro_batch_size` rows per fixed/sorted pass; token_budget and packing get that many rows'
worth of the longest row as their budget, the backend's default). Prompts are distinct and
`share_prompt_forward` is off, so only the plan differs. Steps alternate A B C D after one warm-up
round; reported: median seconds per step, training tokens/s (the rows' real tokens, padding not
counted), positions computed, the ratio of tokens/s to `fixed`, and the largest loss difference
(same work: equal to ~1e-6). Writes benchmarks/results/microbatching.json (or --out).

    .venv/bin/python -m benchmarks.microbatching                              # the kit's small model (~11 M)
    .venv/bin/python -m benchmarks.microbatching --model /path/to/smollm2     # a real model
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

import torch

from benchmarks.timing import interleaved_train_steps, write_result
from reinforge.backends.training.dtensor import microbatching
from reinforge.backends.training.dtensor.backend import DTensorBackend
from reinforge.backends.training.dtensor.config import DTensorConfig
from reinforge.core.batch import Batch
from reinforge.core.run_config import OptimizerConfig, PolicyConfig

RESULTS = Path(__file__).resolve().parent / "results"

PLANS = {
    "fixed": DTensorConfig(microbatching="fixed", share_prompt_forward=False),
    "sorted": DTensorConfig(microbatching="sorted", share_prompt_forward=False),
    "token_budget": DTensorConfig(microbatching="token_budget", share_prompt_forward=False),
    "packed": DTensorConfig(sequence_packing=True, share_prompt_forward=False),
}


def natural_batch(vocab: int, rows: int, max_response: int, seed: int) -> Batch:
    """Distinct prompts of 20-120 tokens; responses log-uniform in [8, max_response] (most short, a few long)."""
    generator = torch.Generator().manual_seed(seed)
    pieces = []
    for _ in range(rows):
        prompt = torch.randint(10, vocab, (int(torch.randint(20, 121, (1,), generator=generator)),), generator=generator)
        size = int(math.exp(float(torch.empty(1).uniform_(math.log(8), math.log(max_response), generator=generator))))
        pieces.append((prompt, torch.randint(10, vocab, (size,), generator=generator)))
    width = max(len(p) + len(r) for p, r in pieces)
    ids = torch.zeros(rows, width, dtype=torch.long)
    mask = torch.zeros(rows, width)
    for row, (prompt, answer) in enumerate(pieces):
        ids[row, : len(prompt) + len(answer)] = torch.cat([prompt, answer])
        mask[row, len(prompt) : len(prompt) + len(answer)] = 1.0
    lengths = torch.tensor([len(p) + len(r) for p, r in pieces])
    return Batch(input_ids=ids, input_lengths=lengths, token_mask=mask, sample_mask=torch.ones(rows))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.microbatching", description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a Hugging Face model folder (default: the kit's small model)")
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--max-response", type=int, default=384)
    parser.add_argument("--micro-batch", type=int, default=8, help="policy.train_micro_batch_size")
    parser.add_argument("--repeats", type=int, default=3, help="measured steps per plan, interleaved")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "microbatching.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.model is None:
        from reinforge.models.tiny_model import build_model

        model = str(build_model(size="small"))
    else:
        model = args.model
    policy = PolicyConfig(
        model_name=model, train_global_batch_size=args.rows, train_micro_batch_size=args.micro_batch,
        logprob_batch_size=args.micro_batch, max_total_sequence_length=120 + args.max_response,
        max_grad_norm=1.0, optimizer=OptimizerConfig(name="adamw", lr=1e-7, weight_decay=0.0),
    )
    backends = {name: DTensorBackend(policy, options) for name, options in PLANS.items()}
    batch = natural_batch(backends["fixed"].model.config.vocab_size, args.rows, args.max_response, seed=0)
    tokens = int(batch["input_lengths"].sum())
    seconds, losses = interleaved_train_steps(backends, batch, args.repeats)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    rates = {name: tokens / median for name, median in medians.items()}
    result = {
        "config": {k: v for k, v in vars(args).items() if k != "out"} | {"model": model},
        "tokens": tokens,
        "padded_positions": int(batch["input_ids"].numel()),
        "positions": {name: sum(p.positions for p in microbatching.plan(batch, backends[name].options, args.micro_batch))
                      for name in PLANS},  # fmt: skip
        "seconds": seconds,
        "median_seconds": medians,
        "tokens_per_second": rates,
        "ratio_to_fixed": {name: rate / rates["fixed"] for name, rate in rates.items()},
        "max_loss_difference": max(abs(a - b) for name in PLANS for a, b in zip(losses[name], losses["fixed"])),
    }
    print(f"{args.rows} rows, {tokens} tokens ({result['padded_positions']} padded to the longest row)")
    print(f"{'plan':<13} {'positions':>9} {'median s':>9} {'tokens/s':>9} {'vs fixed':>9}")
    for name in PLANS:
        print(f"{name:<13} {result['positions'][name]:>9} {medians[name]:>9.2f} {rates[name]:>9.0f} "
              f"{result['ratio_to_fixed'][name]:>8.2f}x")  # fmt: skip
    print(f"losses differ by {result['max_loss_difference']:.1e}")
    result = write_result(args.out, "dtensor train step on natural-length rows: fixed, sorted, token_budget and packed plans",
                          args.threads, **result)
    for backend in backends.values():
        backend.shutdown()
    return result


if __name__ == "__main__":
    main()
