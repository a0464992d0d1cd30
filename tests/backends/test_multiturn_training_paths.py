"""A multi-turn batch (observation tokens masked out inside the response) trains the same on every path:
shared prompt forward on and off, and the output layer at response positions only."""

from __future__ import annotations

import pytest
import torch

from reinforge.backends.training.dtensor.backend import DTensorBackend
from reinforge.backends.training.dtensor.config import DTensorConfig
from reinforge.core.batch import Batch
from reinforge.core.interfaces import EnvironmentStep
from reinforge.core.run_config import OptimizerConfig, PolicyConfig
from reinforge.core.sampling import SamplingParams
from reinforge.rollouts.turns import run_rollouts
from reinforge.testing.conformance_training import ConformanceNLLLoss, weights


class VariedGeneration:
    """Row r of call c replies with reply (r + c) % 4: rows of one prompt differ, and all is deterministic."""

    def __init__(self, tokenizer):
        self.replies = [list(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in ("4", "2 + 2 = 4", "five", "x")]
        self.eos = tokenizer.eos_token_id
        self.calls = 0

    def generate(self, batch: Batch, sampling: SamplingParams) -> Batch:
        rows = [batch["input_ids"][r, : int(batch["input_lengths"][r])].tolist() for r in range(len(batch))]
        sequences = [row + self.replies[(r + self.calls) % 4] + [self.eos] for r, row in enumerate(rows)]
        self.calls += 1
        padded = Batch.from_sequences(sequences, pad_id=0)
        logprobs = torch.zeros_like(padded["input_ids"], dtype=torch.float32)
        for r, row in enumerate(rows):
            logprobs[r, len(row) : len(sequences[r])] = -1.0
        return Batch(
            output_ids=padded["input_ids"], prompt_lengths=torch.tensor([len(r) for r in rows]),
            generation_lengths=torch.tensor([len(s) - len(r) for s, r in zip(sequences, rows)]),
            sequence_lengths=padded["input_lengths"], generation_logprobs=logprobs, truncated=torch.zeros(len(rows), dtype=torch.bool),
        )


class TwoTurns:
    def step(self, conversations, metadata):
        n = len(conversations)
        first = sum(m["role"] == "assistant" for m in conversations[0]) == 1
        observation = {"role": "user", "content": "Check your answer and say it again."}
        return EnvironmentStep(rewards=[0.5] * n, observations=[observation if first else None] * n, done=[not first] * n)

    def shutdown(self) -> None:
        pass


@pytest.fixture(scope="module")
def multi_turn_batch(tiny_model_dir, tiny_tokenizer):
    questions = ["What is 2 + 2?", "What is 3 + 1?", "Add 1 and 3.", "Four?"]
    prompts = []
    for question in questions:
        messages = [{"role": "user", "content": question}]
        ids = list(tiny_tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False))
        prompts += [{"input_ids": ids, "messages": messages, "metadata": {}} for _ in range(3)]  # groups of 3, adjacent
    result = run_rollouts(
        prompts, generation=VariedGeneration(tiny_tokenizer), environment=TwoTurns(), tokenizer=tiny_tokenizer,
        sampling=SamplingParams(max_new_tokens=16), max_total_length=128, max_turns=2,
    )
    batch = result.batch
    mask = batch["token_mask"]
    for r in range(len(batch)):  # a masked gap (the bridge) between two generated spans, in every row
        inside = mask[r, int(batch["prompt_lengths"][r]) : int(batch["input_lengths"][r])].tolist()
        first_gap = inside.index(0.0)
        assert 0 < first_gap and 1.0 in inside[first_gap:]
    return Batch(**{k: batch[k] for k in ("input_ids", "input_lengths", "prompt_lengths", "token_mask", "sample_mask")})


def backend(model_dir, options: DTensorConfig) -> DTensorBackend:
    policy = PolicyConfig(
        model_name=str(model_dir), train_global_batch_size=12, train_micro_batch_size=3, logprob_batch_size=3,
        max_total_sequence_length=128, max_grad_norm=None, optimizer=OptimizerConfig(name="sgd", lr=1.0, weight_decay=0.0),
    )
    return DTensorBackend(policy, options)


@pytest.mark.parametrize(
    "options",
    [DTensorConfig(share_prompt_forward=True), DTensorConfig(share_prompt_forward=False, lm_head_positions="response")],
    ids=["share_prompt_forward", "lm_head_positions_response"],
)
def test_a_multi_turn_batch_trains_the_same_on_every_path(tiny_model_dir, multi_turn_batch, options):
    torch.set_num_threads(1)
    reference = backend(tiny_model_dir, DTensorConfig(share_prompt_forward=False))
    candidate = backend(tiny_model_dir, options)
    try:
        before = weights(reference)
        expected = reference.train(multi_turn_batch, ConformanceNLLLoss(), temperature=0.7)
        got = candidate.train(multi_turn_batch, ConformanceNLLLoss(), temperature=0.7)
        for key in ("loss", "grad_norm", "tokens"):
            assert got[key] == pytest.approx(expected[key], abs=1e-5), key
        after_ref, after = weights(reference), weights(candidate)
        assert max((after_ref[k] - before[k]).abs().max().item() for k in before) > 1e-3  # a real update
        assert max((after[k] - after_ref[k]).abs().max().item() for k in after) <= 1e-5
    finally:
        reference.shutdown()
        candidate.shutdown()
