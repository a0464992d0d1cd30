"""The turn loop keeps exactly the tokens the model sampled and saw.

A scripted generation backend returns known ids; the trainer's ids must be the prompt ids, then per
turn the generated ids and the chat template's bridge, in that order, with the bridge masked out,
and decoding them must give the template's rendering of the conversation. The bridges below are
written out by hand from ChatML (`<|im_start|>role\\ncontent<|im_end|>\\n`), piece by piece.
"""

from __future__ import annotations

import pytest
import torch

from reinforge.core.batch import Batch
from reinforge.core.errors import ReinforgeError
from reinforge.core.interfaces import EnvironmentStep
from reinforge.core.sampling import SamplingParams
from reinforge.rollouts.bridge import TurnBridge
from reinforge.rollouts.turns import run_rollouts
from reinforge.testing import build_tokenizer

IM_START, IM_END = 1, 2  # the tiny kit's special ids (<|endoftext|> is 0)
LOGPROB = -0.5  # what the scripted generator reports for every token it "samples"


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


class ScriptedGeneration:
    """Returns `turns[k]` (response ids, truncated) on its k-th call, for each row; records what it was asked."""

    def __init__(self, turns):
        self.turns = list(turns)
        self.calls: list[tuple[list[list[int]], SamplingParams]] = []

    def generate(self, batch: Batch, sampling: SamplingParams) -> Batch:
        rows = [batch["input_ids"][r, : int(batch["input_lengths"][r])].tolist() for r in range(len(batch))]
        self.calls.append((rows, sampling))
        response, truncated = self.turns[len(self.calls) - 1]
        assert len(response) <= sampling.max_new_tokens
        sequences = [row + list(response) for row in rows]
        out = Batch.from_sequences(sequences, pad_id=0)
        width = out["input_ids"].shape[1]
        logprobs = torch.zeros(len(rows), width)
        for r, row in enumerate(rows):
            logprobs[r, len(row) : len(row) + len(response)] = LOGPROB
        return Batch(
            output_ids=out["input_ids"],
            prompt_lengths=torch.tensor([len(row) for row in rows]),
            generation_lengths=torch.tensor([len(response)] * len(rows)),
            sequence_lengths=out["input_lengths"],
            generation_logprobs=logprobs,
            truncated=torch.tensor([truncated] * len(rows)),
        )


class TryAgainOnce:
    """Turn 1: reward 0.25 and "Try again." (as `role`); turn 2: reward 1, done."""

    def __init__(self, role: str = "user") -> None:
        self.role = role

    def step(self, conversations, metadata):
        n = len(conversations)
        first = sum(m["role"] == "assistant" for m in conversations[0]) == 1
        if first:
            return EnvironmentStep(rewards=[0.25] * n, observations=[{"role": self.role, "content": "Try again."}] * n, done=[False] * n)
        return EnvironmentStep(rewards=[1.0] * n, observations=[None] * n, done=[True] * n)

    def shutdown(self) -> None:
        pass


PROMPT = [{"role": "user", "content": "What is 2 + 2?"}]


def roll(tok, turns, *, env=None, max_turns=2, max_total_length=128, template=None):
    if template is not None:
        tok.chat_template = template
    prompt_ids = list(tok.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=True, return_dict=False))
    generation = ScriptedGeneration(turns)
    result = run_rollouts(
        [{"input_ids": prompt_ids, "messages": list(PROMPT), "metadata": {}}],
        generation=generation,
        environment=env or TryAgainOnce(),
        tokenizer=tok,
        sampling=SamplingParams(temperature=1.0, max_new_tokens=32, seed=0),
        max_total_length=max_total_length,
        max_turns=max_turns,
    )
    return prompt_ids, result, generation


def row_of(result):
    length = int(result.batch["input_lengths"][0])
    return (
        result.batch["input_ids"][0, :length].tolist(),
        result.batch["token_mask"][0, :length].tolist(),
        result.batch["generation_logprobs"][0, :length].tolist(),
    )


def check_row(tok, prompt_ids, result, pieces):
    """`pieces`: (ids, generated?) in order after the prompt; the row must be exactly their concatenation."""
    sequence, mask, logprobs = row_of(result)
    expected = list(prompt_ids) + [t for part, _ in pieces for t in part]
    assert sequence == expected
    expected_mask = [0.0] * len(prompt_ids) + [float(gen) for part, gen in pieces for _ in part]
    assert mask == expected_mask
    assert logprobs == [LOGPROB if m else 0.0 for m in expected_mask]
    return sequence


def test_a_turn_ending_in_im_end_keeps_the_newline_the_template_puts_after_it(tok):
    """The model wrote <|im_end|> itself: the bridge starts with the "\\n" after it (dropped by today's code)."""
    first, second = ids(tok, "4") + [IM_END], ids(tok, "5") + [IM_END]
    prompt_ids, result, _ = roll(tok, [(first, False), (second, False)])
    bridge = ids(tok, "\n") + [IM_START] + ids(tok, "user\nTry again.") + [IM_END] + ids(tok, "\n") + [IM_START] + ids(tok, "assistant\n")
    assert bridge == [201, 1, 624, 201, 462, 405, 16, 2, 201, 1, 615, 201]  # the tiny kit's ids, by hand
    sequence = check_row(tok, prompt_ids, result, [(first, True), (bridge, False), (second, True)])
    conversation = [*PROMPT, {"role": "assistant", "content": "4"}, {"role": "user", "content": "Try again."},
                     {"role": "assistant", "content": "5"}]
    assert result.batch["messages"][0] == conversation
    # what the trainer sees is what the template renders, up to the "\n" after the last <|im_end|>
    assert tok.decode(sequence) + "\n" == tok.apply_chat_template(conversation, tokenize=False)
    assert result.rewards.tolist() == [1.25] and result.last_rewards.tolist() == [1.0]
    assert result.turns == [2] and not bool(result.batch["truncated"][0]) and not bool(result.max_turns_reached[0])


def test_a_turn_ending_on_a_stop_string_gets_the_template_closing(tok):
    """No <|im_end|> was generated: the bridge brings the whole closing, <|im_end|>\\n."""
    first, second = ids(tok, "<calc>2+2</calc>"), ids(tok, "4") + [IM_END]
    prompt_ids, result, _ = roll(tok, [(first, False), (second, False)])
    bridge = [IM_END] + ids(tok, "\n") + [IM_START] + ids(tok, "user\nTry again.") + [IM_END] + ids(tok, "\n") + [IM_START] + ids(tok, "assistant\n")
    sequence = check_row(tok, prompt_ids, result, [(first, True), (bridge, False), (second, True)])
    conversation = [*PROMPT, {"role": "assistant", "content": "<calc>2+2</calc>"}, {"role": "user", "content": "Try again."},
                    {"role": "assistant", "content": "4"}]
    assert tok.decode(sequence) + "\n" == tok.apply_chat_template(conversation, tokenize=False)


def test_a_turn_cut_at_max_new_tokens_is_closed_by_the_bridge_and_truncation_is_the_last_turns(tok):
    cut, second = ids(tok, "2 + 2 is"), ids(tok, "4") + [IM_END]
    prompt_ids, result, _ = roll(tok, [(cut, True), (second, False)])
    bridge = [IM_END] + ids(tok, "\n") + [IM_START] + ids(tok, "user\nTry again.") + [IM_END] + ids(tok, "\n") + [IM_START] + ids(tok, "assistant\n")
    check_row(tok, prompt_ids, result, [(cut, True), (bridge, False), (second, True)])
    assert not bool(result.batch["truncated"][0]), "the episode ended on a proper stop"
    # the same cut on the last turn: a length limit ended the episode
    _, result, _ = roll(tok, [(ids(tok, "4") + [IM_END], False), (cut, True)])
    assert bool(result.batch["truncated"][0]) and not bool(result.max_turns_reached[0])


def test_max_turns_reached_is_reported_apart_from_truncation(tok):
    _, result, _ = roll(tok, [(ids(tok, "4") + [IM_END], False)], max_turns=1)
    assert bool(result.max_turns_reached[0]) and not bool(result.batch["truncated"][0])
    assert result.turns == [1] and len(result.batch["messages"][0]) == 2, "no observation after the last turn"


def test_the_context_running_out_ends_the_episode_as_truncated(tok):
    first = ids(tok, "4") + [IM_END]
    prompt_ids, result, generation = roll(tok, [(first, False)], max_total_length=30)
    sequence, _, _ = row_of(result)
    assert sequence == prompt_ids + first, "the bridge did not fit: nothing is appended"
    assert bool(result.batch["truncated"][0]) and len(generation.calls) == 1
    assert result.batch["messages"][0][-1]["role"] == "assistant", "an observation the model never saw is not logged"


THINK_STRIPPING = (  # Qwen3's habit, reduced: assistant turns before the last user message lose their <think> block
    "{%- set ns = namespace(last_user=-1) -%}"
    "{%- for m in messages -%}{%- if m.role == 'user' -%}{%- set ns.last_user = loop.index0 -%}{%- endif -%}{%- endfor -%}"
    "{%- for m in messages -%}"
    "{%- if m.role == 'assistant' and loop.index0 < ns.last_user -%}"
    "{{- '<|im_start|>assistant\\n' + (m.content.split('</think>')[-1] | trim) + '<|im_end|>\\n' -}}"
    "{%- else -%}{{- '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' -}}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


@pytest.fixture
def think_tok():
    tokenizer = build_tokenizer()
    tokenizer.chat_template = THINK_STRIPPING
    return tokenizer


def test_a_template_that_strips_earlier_think_blocks_is_refused_for_user_observations(think_tok):
    bridge = TurnBridge(think_tok)
    with pytest.raises(ReinforgeError, match=r"changes an earlier message when a 'user' message is appended"):
        bridge.check("user")
    # the loop refuses at the first observation: it never appends the conversation twice
    reply = ids(think_tok, "<think>\nhm\n</think>\n\n4") + [IM_END]
    with pytest.raises(ReinforgeError, match="<think>"):
        roll(think_tok, [(reply, False), (reply, False)])


def test_the_same_template_bridges_a_tool_observation_by_hand(think_tok):
    """A tool message does not move the last user message, so nothing earlier changes: the bridge is plain ChatML."""
    TurnBridge(think_tok).check("tool")
    first = ids(think_tok, "<think>\nadd\n</think>\n\n<calc>2+2</calc>") + [IM_END]
    second = ids(think_tok, "4") + [IM_END]
    prompt_ids, result, _ = roll(think_tok, [(first, False), (second, False)], env=TryAgainOnce(role="tool"))
    bridge = ids(think_tok, "\n") + [IM_START] + ids(think_tok, "tool\nTry again.") + [IM_END] + ids(think_tok, "\n") + [IM_START] + ids(think_tok, "assistant\n")
    check_row(think_tok, prompt_ids, result, [(first, True), (bridge, False), (second, True)])


def test_a_template_that_drops_or_rejects_a_role_is_named_with_the_role():
    tokenizer = build_tokenizer()
    tokenizer.chat_template = (
        "{%- for m in messages -%}{%- if m.role != 'tool' -%}{{- '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' -}}"
        "{%- endif -%}{%- endfor -%}{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
    )
    with pytest.raises(ReinforgeError, match=r"does not render messages of role 'tool'"):
        TurnBridge(tokenizer).check("tool")
    tokenizer.chat_template = (
        "{%- for m in messages -%}{%- if m.role not in ['user', 'assistant'] -%}{{ raise_exception('roles must alternate') }}"
        "{%- endif -%}{{- m.content -}}{%- endfor -%}"
    )
    with pytest.raises(ReinforgeError, match=r"cannot render a 'tool' message.*roles must alternate"):
        TurnBridge(tokenizer).check("tool")


class GroupedEnv:
    """Row 0 asks for a stop string on its next turn; row 1 keeps the run's."""

    def step(self, conversations, metadata):
        n = len(conversations)
        if sum(m["role"] == "assistant" for m in conversations[0]) == 1:
            return EnvironmentStep(
                rewards=[0.0] * n,
                observations=[{"role": "user", "content": "go"}] * n,
                done=[False] * n,
                next_stop_strings=[["</calc>"], None],
                reward_components=[{"format": 0.5}, {"format": -0.5, "answer": 0.0}],
            )
        return EnvironmentStep(rewards=[1.0] * n, observations=[None] * n, done=[True] * n,
                               reward_components=[{"answer": 1.0}] * n)

    def shutdown(self) -> None:
        pass


class EchoGeneration(ScriptedGeneration):
    def __init__(self, response):
        super().__init__([])
        self.response = response

    def generate(self, batch, sampling):
        self.turns.append((self.response[: sampling.max_new_tokens], len(self.response) > sampling.max_new_tokens))
        return super().generate(batch, sampling)


def test_rows_are_generated_in_groups_of_one_stop_set_and_one_budget(tok):
    short = list(tok.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=True, return_dict=False))
    long_prompt = [{"role": "user", "content": "What is 2 + 2? " * 6}]
    long = list(tok.apply_chat_template(long_prompt, add_generation_prompt=True, tokenize=True, return_dict=False))
    max_total = len(long) + 14  # the long row has 14 tokens of room (2 generated + 11 of bridge + 1), the short one 16
    generation = EchoGeneration(ids(tok, "4") + [IM_END])
    result = run_rollouts(
        [{"input_ids": short, "messages": list(PROMPT), "metadata": {}},
         {"input_ids": long, "messages": list(long_prompt), "metadata": {}}],
        generation=generation, environment=GroupedEnv(), tokenizer=tok,
        sampling=SamplingParams(max_new_tokens=16, seed=5, stop_strings=("END",)), max_total_length=max_total, max_turns=2,
    )
    first_turn = [(len(rows), s.stop_strings, s.max_new_tokens, s.seed) for rows, s in generation.calls[:2]]
    assert first_turn == [(1, ("END",), 16, 5), (1, ("END",), 14, (5 + 7919) % 2**31)], "budgets differ: two calls"
    second_turn = sorted((s.stop_strings, s.max_new_tokens) for _, s in generation.calls[2:])
    bridge_len = len(TurnBridge(tok).ids({"role": "user", "content": "go"}, [IM_END]))
    assert bridge_len == 11  # \n <|im_start|> user \n g o <|im_end|> \n <|im_start|> assistant \n
    assert second_turn == sorted([(("</calc>",), 16), (("END",), 14 - 2 - bridge_len)])
    assert result.reward_components == [{"format": 0.5, "answer": 1.0}, {"format": -0.5, "answer": 1.0}]


def test_the_run_refuses_at_start_a_template_that_cannot_bridge_the_environments_roles(think_tok):
    """GRPO.setup (max_rollout_turns > 1) and `reinforge eval` (max_turns > 1) call check_turns before any step."""
    from reinforge.algorithms.grpo import GRPO
    from reinforge.algorithms.grpo_config import GRPOConfig
    from reinforge.rollouts.service import RolloutService

    class UserGame(TryAgainOnce):
        observation_roles = ("user",)

    class FakeRun:  # just what GRPO.setup reads
        class loader:  # noqa: N801
            batch_size = 2

        class policy_config:  # noqa: N801
            train_global_batch_size = 8

        rollouts = RolloutService(ScriptedGeneration([]), UserGame(), think_tok, max_total_length=64)
        registry = None  # GRPO then builds the default registry for its advantage estimator

    with pytest.raises(ReinforgeError, match=r"when a 'user' message is appended"):
        GRPO(GRPOConfig(num_generations_per_prompt=4, max_rollout_turns=2)).setup(FakeRun())
    GRPO(GRPOConfig(num_generations_per_prompt=4, max_rollout_turns=1)).setup(FakeRun())  # one turn: nothing to bridge
    RolloutService(ScriptedGeneration([]), TryAgainOnce(role="tool"), think_tok, max_total_length=64).check_turns()  # no roles declared
