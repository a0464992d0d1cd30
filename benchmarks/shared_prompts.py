"""Training step time with and without `share_prompt_forward`, on GRPO-shaped batches.

Both backends train the same batch (P prompts of a given length x G responses of uniform random
length), with the same plan (`microbatching: token_budget`) and the head at response positions
only; the only difference is whether each prompt runs once per pass or once per row. Steps alternate
A B A B after one warm-up step each; reported: median seconds per step, min-max, the ratio of
medians, the positions each plan computes, and the losses (equal to 1e-5: same work).
Writes benchmarks/results/shared_prompts.json (or --out).

    .venv/bin/python -m benchmarks.shared_prompts --model /path/to/smollm2 --prompt-tokens 100   # the SmolLM2 recipe's shape
    .venv/bin/python -m benchmarks.shared_prompts --repeats 1                                     # tiny model, a smoke run
"""

from __future__ import annotations

import argparse
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


def grpo_batch(vocab: int, prompts: int, group: int, prompt_tokens: int, response: tuple[int, int], seed: int) -> Batch:
    """`prompts` x `group` rows; prompts of prompt_tokens +- 5 %, responses uniform in [response[0], response[1]]."""
    generator = torch.Generator().manual_seed(seed)
    pieces = []
    spread = max(prompt_tokens // 20, 1)
    for _ in range(prompts):
        length = prompt_tokens + int(torch.randint(-spread, spread + 1, (1,), generator=generator))
        prompt = torch.randint(10, vocab, (max(length, 1),), generator=generator)
        for _ in range(group):
            size = int(torch.randint(response[0], response[1] + 1, (1,), generator=generator))
            pieces.append((prompt, torch.randint(10, vocab, (size,), generator=generator)))
    width = max(len(p) + len(r) for p, r in pieces)
    ids = torch.zeros(len(pieces), width, dtype=torch.long)
    mask = torch.zeros(len(pieces), width)
    for row, (prompt, answer) in enumerate(pieces):
        ids[row, : len(prompt) + len(answer)] = torch.cat([prompt, answer])
        mask[row, len(prompt) : len(prompt) + len(answer)] = 1.0
    lengths = torch.tensor([len(p) + len(r) for p, r in pieces])
    return Batch(input_ids=ids, input_lengths=lengths, token_mask=mask, sample_mask=torch.ones(len(pieces)))


def positions(batch: Batch, options: DTensorConfig, size: int) -> int:
    """Positions the plan's passes compute, padding included."""
    plans = microbatching.plan(batch, options, size)
    return sum(p.shared.num_tokens if p.shared is not None else p.batch["input_ids"].numel() for p in plans)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.shared_prompts", description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a Hugging Face model folder (default: the tiny test model)")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--generations", type=int, default=4, help="G, responses per prompt")
    parser.add_argument("--prompt-tokens", type=int, default=100)
    parser.add_argument("--response-tokens", default="15-64", help="MIN-MAX response length")
    parser.add_argument("--micro-batch", type=int, default=8, help="policy.train_micro_batch_size (the token budget is rows x longest row)")
    parser.add_argument("--repeats", type=int, default=3, help="measured steps per variant, interleaved")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "shared_prompts.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    low, high = (int(x) for x in args.response_tokens.split("-"))
    if args.model is None:
        from reinforge.models.tiny_model import build_model

        model = str(build_model(size="tiny"))
    else:
        model = args.model
    policy = PolicyConfig(
        model_name=model, train_global_batch_size=args.prompts * args.generations, train_micro_batch_size=args.micro_batch,
        logprob_batch_size=args.micro_batch, max_total_sequence_length=args.prompt_tokens * 2 + high,
        max_grad_norm=1.0, optimizer=OptimizerConfig(name="adamw", lr=1e-7, weight_decay=0.0),
    )
    variants = {
        "padded": DTensorConfig(microbatching="token_budget", lm_head_positions="response", share_prompt_forward=False),
        "shared": DTensorConfig(microbatching="token_budget", lm_head_positions="response", share_prompt_forward=True),
    }
    backends = {name: DTensorBackend(policy, options) for name, options in variants.items()}
    batch = grpo_batch(backends["padded"].model.config.vocab_size, args.prompts, args.generations, args.prompt_tokens, (low, high), 0)
    seconds, losses = interleaved_train_steps(backends, batch, args.repeats)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    result = {
        "config": {k: v for k, v in vars(args).items() if k != "out"} | {"model": model},
        "rows": len(batch),
        "positions": {name: positions(batch, options, args.micro_batch) for name, options in variants.items()},
        "seconds": seconds,
        "median_seconds": medians,
        "ratio_shared_to_padded": medians["shared"] / medians["padded"],
        "max_loss_difference": max(abs(a - b) for a, b in zip(losses["padded"], losses["shared"])),
    }
    print(f"{'variant':<8} {'positions':>9} {'median s':>9} {'min-max s':>13}")
    for name in variants:
        values = seconds[name]
        print(f"{name:<8} {result['positions'][name]:>9} {medians[name]:>9.2f} {min(values):>6.2f}-{max(values):<6.2f}")
    print(f"shared / padded: {result['ratio_shared_to_padded']:.2f}x  (losses differ by {result['max_loss_difference']:.1e})")
    result = write_result(args.out, "dtensor train step, share_prompt_forward on vs off (token_budget, response-only head)",
                          args.threads, **result)
    for backend in backends.values():
        backend.shutdown()
    return result


if __name__ == "__main__":
    main()
