"""Multi-turn rollouts: observations are appended by the chat template and never trained on."""

from __future__ import annotations

from transformers import AutoTokenizer

from reinforge.rollouts.turns import run_rollouts
from reinforge.backends.generation.hf.backend import HFGenerationBackend
from reinforge.core.interfaces import EnvironmentStep
from reinforge.core.run_config import PolicyConfig
from reinforge.core.sampling import SamplingParams


class TwoTurnEnvironment:
    """Asks for a second attempt once, then ends; rewards 0.25 per turn."""

    def __init__(self) -> None:
        self.calls = 0

    def step(self, conversations, metadata):
        self.calls += 1
        first = all(sum(m["role"] == "assistant" for m in c) == 1 for c in conversations)
        n = len(conversations)
        return EnvironmentStep(
            rewards=[0.25] * n,
            observations=[{"role": "user", "content": "Try again."} if first else None] * n,
            done=[not first] * n,
            metrics={"turn": float(self.calls)},
        )

    def shutdown(self) -> None:
        pass


def roll_out(model_dir, messages, environment, *, copies, max_turns):
    """`copies` rollouts of one prompt (the tiny model, hf generation, 6 new tokens per turn); (tokenizer, prompt ids, result)."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    generation = HFGenerationBackend(PolicyConfig(model_name=str(model_dir), max_total_sequence_length=128))
    ids = list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])
    result = run_rollouts(
        [{"input_ids": ids, "messages": messages, "metadata": {"answer": "4"}} for _ in range(copies)],
        generation=generation,
        environment=environment,
        tokenizer=tokenizer,
        sampling=SamplingParams(temperature=1.0, max_new_tokens=6, seed=0),
        max_total_length=128,
        max_turns=max_turns,
    )
    return tokenizer, ids, result


def test_two_turn_rollout_masks_the_observation_and_sums_rewards(tiny_model_dir):
    env = TwoTurnEnvironment()
    tokenizer, ids, result = roll_out(tiny_model_dir, [{"role": "user", "content": "What is 2 + 2?"}], env, copies=3, max_turns=3)
    assert env.calls == 2 and result.turns == [2, 2, 2]
    assert result.rewards.tolist() == [0.5, 0.5, 0.5]
    observation = tokenizer("Try again.", add_special_tokens=False)["input_ids"]
    batch = result.batch
    for row in range(3):
        length = int(batch["input_lengths"][row])
        sequence = batch["input_ids"][row, :length].tolist()
        mask = batch["token_mask"][row, :length].tolist()
        start = next(i for i in range(len(ids), length) if sequence[i : i + len(observation)] == observation)
        assert all(m == 0.0 for m in mask[: len(ids)]), "prompt tokens are not trained on"
        assert all(m == 0.0 for m in mask[start : start + len(observation)]), "observation tokens are not trained on"
        assert mask[len(ids)] == 1.0 and mask[length - 1] == 1.0, "both responses are trained on"
        gen_lp = batch["generation_logprobs"][row, :length]
        assert (gen_lp[start : start + len(observation)] == 0).all()
        assert (gen_lp[torch_mask(mask)] < 0).all()
        roles = [m["role"] for m in batch["messages"][row]]
        assert roles == ["user", "assistant", "user", "assistant"]


def torch_mask(mask):
    import torch

    return torch.tensor(mask) > 0


class OneTurnEnvironment:
    """Ends every conversation after one reply; keeps what it was shown."""

    def __init__(self) -> None:
        self.seen = []

    def step(self, conversations, metadata):
        self.seen.extend(conversations)
        n = len(conversations)
        return EnvironmentStep(rewards=[0.0] * n, observations=[None] * n, done=[True] * n)

    def shutdown(self) -> None:
        pass


def test_a_worked_example_in_the_prompt_is_not_part_of_the_response(tiny_model_dir):
    """data.example_turns put an assistant message in the prompt: `responses` holds only the generated reply."""
    example = "1 + 1 = 2. The answer is \\boxed{2}."
    messages = [
        {"role": "user", "content": "What is 1 + 1?"},
        {"role": "assistant", "content": example},
        {"role": "user", "content": "What is 2 + 2?"},
    ]
    env = OneTurnEnvironment()
    _, _, result = roll_out(tiny_model_dir, messages, env, copies=2, max_turns=1)
    for row, conversation in enumerate(env.seen):
        assert conversation[:3] == messages  # the environment still sees the whole conversation
        reply = conversation[3]["content"]
        assert result.responses[row] == reply and example not in result.responses[row]
