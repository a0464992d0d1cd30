"""Token equality with a real engine (`hf` on the tiny model): the ids the generator returned, turn after turn,
are exactly the trainer's masked-in spans, with their logprobs, across roles, stop strings and cut turns."""

from __future__ import annotations

import torch

from reinforge.backends.generation.hf.backend import HFGenerationBackend
from reinforge.core.interfaces import EnvironmentStep
from reinforge.core.model_config import ModelConfig
from reinforge.core.sampling import SamplingParams
from reinforge.rollouts.turns import run_rollouts
from reinforge.testing.token_exactness import RecordingGeneration, count_mismatches


class ThreeTurns:
    """Answers every turn until the third, as a user or a tool, asking some rows to stop at a period next."""

    observation_roles = ("user", "tool")

    def step(self, conversations, metadata):
        n = len(conversations)
        turn = sum(m["role"] == "assistant" for m in conversations[0][1:])
        role = "tool" if turn % 2 else "user"
        return EnvironmentStep(
            rewards=[0.1] * n,
            observations=[None if turn >= 3 else {"role": role, "content": f"result {turn}: 42"}] * n,
            done=[turn >= 3] * n,
            next_stop_strings=[["."] if (m["index"] + turn) % 2 else None for m in metadata],
        )

    def shutdown(self) -> None:
        pass


def test_hf_generated_ids_are_the_trainers_masked_in_spans(tiny_model_dir, tiny_tokenizer):
    torch.set_num_threads(1)
    generation = RecordingGeneration(HFGenerationBackend(ModelConfig(model_name=str(tiny_model_dir), max_total_sequence_length=256)))
    prompts = []
    for index in range(24):
        messages = [{"role": "user", "content": f"What is {index} + {index}?"}]
        ids = list(tiny_tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False))
        prompts.append({"input_ids": ids, "messages": messages, "metadata": {"index": index}})
    result = run_rollouts(
        prompts, generation=generation, environment=ThreeTurns(), tokenizer=tiny_tokenizer,
        sampling=SamplingParams(temperature=1.0, max_new_tokens=10, seed=3, stop_strings=("=",)), max_total_length=200, max_turns=3,
    )
    exact = count_mismatches(generation, result)
    assert exact.rollouts == 24 and exact.turns == 72 and exact.generated_tokens > 300
    assert (exact.mismatched_tokens, exact.mismatched_logprobs, exact.rows_with_missing_turns) == (0, 0, 0)
    # the check can fail: one trainer token changed is a mismatch
    row = 5
    position = int(result.batch["token_mask"][row].nonzero()[-1])
    result.batch["input_ids"][row, position] += 1
    assert count_mismatches(generation, result).mismatched_tokens > 0
