"""Overhead of the embedded backends on this CPU, for the "small" model preset.

- generation: `hf` backend `generate` vs calling `model.generate` directly (same prompts, same
  number of new tokens, sampling), in new tokens/s;
- training: one `dtensor` train step vs a plain PyTorch loop (forward, masked NLL, backward,
  AdamW step) on the same batch, in tokens/s.

Runs are interleaved and the median of each is reported (the machine is shared and noisy).
Writes benchmarks/results/backends_cpu.json.

    .venv/bin/python benchmarks/backends_cpu.py [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from transformers import GenerationConfig

from reinforge.algorithms.losses import NLLLoss
from reinforge.backends.generation.hf.backend import HFGenerationBackend
from reinforge.backends.generation.sampling_utils import to_left_padded
from reinforge.backends.training.dtensor.backend import DTensorBackend
from reinforge.core.batch import Batch
from reinforge.core.run_config import OptimizerConfig, PolicyConfig
from reinforge.core.sampling import SamplingParams
from reinforge.testing import build_model

RESULTS = Path(__file__).resolve().parent / "results"


def median_seconds(fns: dict[str, callable], repeats: int) -> dict[str, float]:
    for fn in fns.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def prompts(tokenizer, count: int) -> list[list[int]]:
    messages = [[{"role": "user", "content": f"What is {i} + {2 * i + 3}?"}] for i in range(count)]
    encoded = [tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=True, return_dict=True) for m in messages]
    return [list(e["input_ids"]) for e in encoded]


def bench_generation(model_dir: Path, rows: int, new_tokens: int, repeats: int) -> dict[str, float]:
    backend = HFGenerationBackend(PolicyConfig(model_name=str(model_dir), max_total_sequence_length=512))
    backend.eos_token_ids = []  # every variant generates exactly `new_tokens`
    ids = prompts(backend.tokenizer, rows)
    batch = Batch.from_sequences(ids, pad_id=backend.pad_token_id)
    left, mask = to_left_padded(batch["input_ids"], batch["input_lengths"], backend.pad_token_id)
    config = GenerationConfig(do_sample=True, temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=new_tokens,
                              min_new_tokens=new_tokens, pad_token_id=backend.pad_token_id, eos_token_id=None)
    sampling = SamplingParams(temperature=1.0, max_new_tokens=new_tokens, seed=0)

    def direct() -> None:
        with torch.inference_mode():
            backend.model.generate(input_ids=left, attention_mask=mask, generation_config=config)

    def through_backend() -> None:
        backend.generate(batch, sampling)

    seconds = median_seconds({"model.generate": direct, "hf backend": through_backend}, repeats)
    tokens = rows * new_tokens
    return {
        "rows": rows,
        "new_tokens": new_tokens,
        "direct_tokens_per_s": tokens / seconds["model.generate"],
        "backend_tokens_per_s": tokens / seconds["hf backend"],
        "overhead": seconds["hf backend"] / seconds["model.generate"] - 1,
    }


def training_batch(tokenizer, rows: int, length: int) -> Batch:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(3, tokenizer.vocab_size - 1, (rows, length), generator=generator)
    mask = torch.ones(rows, length)
    mask[:, : length // 4] = 0  # the "prompt" part does not count
    return Batch(input_ids=ids, input_lengths=torch.full((rows,), length), token_mask=mask, sample_mask=torch.ones(rows))


def bench_training(model_dir: Path, rows: int, length: int, repeats: int) -> dict[str, float]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    policy = PolicyConfig(
        model_name=str(model_dir),
        train_global_batch_size=rows,
        train_micro_batch_size=rows,
        max_total_sequence_length=length,
        max_grad_norm=1.0,
        optimizer=OptimizerConfig(lr=1e-5),
    )
    backend = DTensorBackend(policy)
    batch = training_batch(AutoTokenizer.from_pretrained(model_dir), rows, length)
    loss_fn = NLLLoss()

    plain = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    plain.train()
    optimizer = torch.optim.AdamW(plain.parameters(), lr=1e-5, weight_decay=0.01)
    ids, mask = batch["input_ids"], batch["token_mask"]

    def plain_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        logits = plain(input_ids=ids).logits[:, :-1]  # [B, T-1, V]
        logprobs = torch.log_softmax(logits.float(), dim=-1).gather(2, ids[:, 1:, None]).squeeze(2)
        loss = -(logprobs * mask[:, 1:]).sum() / mask[:, 1:].sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(plain.parameters(), 1.0)
        optimizer.step()

    def backend_step() -> None:
        backend.train(batch, loss_fn)

    seconds = median_seconds({"plain loop": plain_step, "dtensor backend": backend_step}, repeats)
    tokens = rows * length
    return {
        "rows": rows,
        "length": length,
        "plain_tokens_per_s": tokens / seconds["plain loop"],
        "backend_tokens_per_s": tokens / seconds["dtensor backend"],
        "overhead": seconds["dtensor backend"] / seconds["plain loop"] - 1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", default="small")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model_dir = build_model(size=args.size)
    generation = [bench_generation(model_dir, rows, 64, args.repeats) for rows in (8, 32)]
    training = [bench_training(model_dir, rows, 128, args.repeats) for rows in (8, 16)]

    print(f"\nhf generation vs model.generate ({args.size} model, {args.threads} threads, median of {args.repeats})")
    print(f"{'rows x new':>12} {'direct tok/s':>14} {'backend tok/s':>14} {'overhead':>9}")
    for r in generation:
        print(f"{r['rows']:>5} x {r['new_tokens']:<4} {r['direct_tokens_per_s']:>14.0f} {r['backend_tokens_per_s']:>14.0f} {r['overhead']:>+8.1%}")
    print(f"\ndtensor train step vs plain PyTorch loop ({args.size} model)")
    print(f"{'rows x len':>12} {'plain tok/s':>14} {'backend tok/s':>14} {'overhead':>9}")
    for r in training:
        print(f"{r['rows']:>5} x {r['length']:<4} {r['plain_tokens_per_s']:>14.0f} {r['backend_tokens_per_s']:>14.0f} {r['overhead']:>+8.1%}")

    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "backends_cpu.json"
    out.write_text(json.dumps({
        "machine": {"cpus": torch.get_num_threads(), "platform": platform.platform(), "torch": torch.__version__},
        "model": args.size, "repeats": args.repeats, "generation": generation, "training": training,
    }, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
