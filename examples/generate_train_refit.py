"""The two embedded backends by hand, on a CPU: generate with `hf`, train with `dtensor`, refit, compare.

Builds the project's small model offline, samples answers to a few prompts, trains the policy for a few
steps to make its own sampled responses more likely (a plain NLL loss on the response tokens), pushes the
new weights into the generator in buckets, and shows that the greedy generations changed.

    .venv/bin/python examples/generate_train_refit.py [--size tiny|small] [--steps 5]
"""

from __future__ import annotations

import argparse

import torch
from transformers import AutoTokenizer

from reinforge.algorithms.losses import NLLLoss
from reinforge.backends.generation.hf.backend import HFGenerationBackend
from reinforge.backends.training.dtensor.backend import DTensorBackend
from reinforge.core.batch import Batch
from reinforge.core.run_config import OptimizerConfig, PolicyConfig
from reinforge.core.sampling import SamplingParams
from reinforge.testing import build_model

QUESTIONS = ["What is 3 + 4?", "What is 12 - 5?", "What is 7 + 8?", "What is 9 - 2?"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small")
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()

    model_dir = build_model(size=args.size)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    policy = PolicyConfig(
        model_name=str(model_dir),
        max_total_sequence_length=96,
        train_global_batch_size=16,
        train_micro_batch_size=8,
        optimizer=OptimizerConfig(lr=1e-3),
    )
    generator = HFGenerationBackend(policy)
    trainer = DTensorBackend(policy)

    prompts = [
        list(tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])
        for q in QUESTIONS
    ]
    batch = Batch.from_sequences(prompts, pad_id=generator.pad_token_id)
    greedy = SamplingParams(temperature=0.0, max_new_tokens=16)

    def show(title: str) -> list[list[int]]:
        out = generator.generate(batch, greedy)
        responses = [out["output_ids"][i, int(out["prompt_lengths"][i]) : int(out["sequence_lengths"][i])].tolist() for i in range(len(QUESTIONS))]
        print(f"\n{title}")
        for question, ids in zip(QUESTIONS, responses):
            print(f"  {question:18s} -> {tokenizer.decode(ids)!r}")
        return responses

    before = show("greedy generations before training")

    # Sample 4 responses per prompt and train on them: the policy makes its own samples more likely.
    samples = generator.generate(batch, SamplingParams(temperature=1.0, max_new_tokens=16, n=4, seed=0))
    token_mask = torch.zeros_like(samples["output_ids"], dtype=torch.float32)
    for i in range(len(token_mask)):
        token_mask[i, int(samples["prompt_lengths"][i]) : int(samples["sequence_lengths"][i])] = 1.0
    train_batch = Batch(
        input_ids=samples["output_ids"],
        input_lengths=samples["sequence_lengths"],
        token_mask=token_mask,
        sample_mask=torch.ones(len(token_mask)),
    )
    for step in range(1, args.steps + 1):
        metrics = trainer.train(train_batch, NLLLoss())  # one AdamW step
        print(f"train step {step}: loss {metrics['loss']:.4f}  grad_norm {metrics['grad_norm']:.3f}")

    moved = 0
    for bucket in trainer.named_weights(bucket_bytes=4 * 2**20):  # refit in 4 MiB buckets
        generator.update_weights(bucket)
        moved += sum(t.numel() * t.element_size() for _, t in bucket)
    print(f"\nrefit: {moved / 2**20:.1f} MiB moved into the generator")

    after = show("greedy generations after training and refit")
    changed = sum(a != b for a, b in zip(before, after))
    print(f"\n{changed} of {len(QUESTIONS)} generations changed")


if __name__ == "__main__":
    main()
