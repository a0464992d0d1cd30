"""Prompt records as TRL writes them: `prompt` (a string, or a list of messages) as well as `problem`; DPO's
`prompt` (preference pairs) is untouched."""

from __future__ import annotations

import pytest

from reinforge.core.errors import ReinforgeError
from reinforge.core.model_config import ModelConfig
from reinforge.core.records import RecordFormat
from reinforge.core.run_config import ChatTurn, DataConfig
from reinforge.data.preparation import prepare_records
from reinforge.data.prompts import PromptConfig, build_prompts
from reinforge.environments.function import FunctionEnvironment
from tests.data.test_prompts import make_tokenizer

TEMPLATE = PromptConfig(prompt_file=None, system_prompt="Be brief.", max_prompt_length=100)


def test_a_string_prompt_is_a_problem_by_another_name():
    by_problem, _ = build_prompts([{"problem": "What is 2 + 2?", "answer": "4"}], make_tokenizer(), TEMPLATE)
    by_prompt, stats = build_prompts([{"prompt": "What is 2 + 2?", "answer": "4"}], make_tokenizer(), TEMPLATE)
    assert by_prompt[0]["messages"] == by_problem[0]["messages"] == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 2?"}]
    assert by_prompt[0]["input_ids"] == by_problem[0]["input_ids"] and stats["prompts"] == 1
    assert by_prompt[0]["metadata"]["prompt"] == "What is 2 + 2?" and by_prompt[0]["metadata"]["answer"] == "4"


def test_a_message_list_prompt_is_the_conversation_with_the_system_prompt_and_examples_first():
    config = PromptConfig(prompt_file=None, system_prompt="Be brief.", example_turns=(ChatTurn(role="user", content="Q:"),
                          ChatTurn(role="assistant", content="A:")), max_prompt_length=100)
    messages = [{"role": "user", "content": "What is 2 + 2?"}]
    [prompt], _ = build_prompts([{"prompt": messages, "answer": "4"}], make_tokenizer(), config)
    assert [m["content"] for m in prompt["messages"]] == ["Be brief.", "Q:", "A:", "What is 2 + 2?"]
    own_system = [{"role": "system", "content": "Think"}, *messages]
    [prompt], _ = build_prompts([{"prompt": own_system}], make_tokenizer(), config)
    assert [m["content"] for m in prompt["messages"]] == ["Think", "Q:", "A:", "What is 2 + 2?"]  # its own system message wins


def test_problem_wins_over_prompt_and_a_record_with_neither_is_named():
    [prompt], _ = build_prompts([{"problem": "What is 2 + 2?", "prompt": "ignored"}], make_tokenizer(), TEMPLATE)
    assert prompt["messages"][-1]["content"] == "What is 2 + 2?"
    with pytest.raises(ReinforgeError, match=r"record 1 \(counting from 0\) has neither 'problem' nor 'prompt' \(its keys: \['question'\]\)"):
        build_prompts([{"problem": "1"}, {"question": "What is 2 + 2?"}], make_tokenizer(), TEMPLATE)
    with pytest.raises(ReinforgeError, match="key 'prompt': message 0 is not a {role, content} dict"):
        build_prompts([{"prompt": [{"text": "hi"}]}], make_tokenizer(), TEMPLATE)


def test_the_reward_function_receives_a_string_prompt_as_its_prompt():
    seen = []
    env = FunctionEnvironment(lambda prompt, response, **metadata: seen.append((prompt, metadata)) or 1.0)
    conversation = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "templated"},
                    {"role": "assistant", "content": "4"}]
    env.step([conversation, conversation], [{"prompt": "What is 2 + 2?", "answer": "4"}, {"prompt": [{"role": "user", "content": "x"}]}])
    assert seen == [("What is 2 + 2?", {"answer": "4"}), ("templated", {})]  # a message list: its last user message


def test_preference_records_keep_their_own_prompt(tiny_tokenizer):
    record = {"prompt": "What is 2 + 2?", "chosen": "4", "rejected": "5"}
    pairs, _ = prepare_records(RecordFormat(kind="preference_pairs"), [record], tiny_tokenizer, data=DataConfig(),
                               model=ModelConfig(model_name="m", max_total_sequence_length=512), source="test")
    assert len(pairs) == 1 and set(pairs[0]) == {"chosen", "rejected"}
