"""Tool schemas (data.tools) reach every chat-template call, and worked examples may hold tool exchanges."""

from __future__ import annotations

import pytest

from reinforge.core.errors import ReinforgeError
from reinforge.core.run_config import ChatTurn, DataConfig
from reinforge.data.prompts import build_prompt_set
from reinforge.rollouts.bridge import TurnBridge
from reinforge.testing import CHAT_TEMPLATE, build_tokenizer

CALCULATOR = {"name": "calculator", "description": "evaluates arithmetic", "parameters": {
    "type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]}}
WITH_TOOLS = (  # ChatML plus a system block listing the tools, as tool-aware templates (Qwen2.5, Hermes) write it
    "{%- if tools -%}{{- '<|im_start|>system\\nTools: ' -}}{%- for t in tools -%}{{- t.function.name + ' ' -}}{%- endfor -%}"
    "{{- '<|im_end|>\\n' -}}{%- endif -%}" + CHAT_TEMPLATE
)


def turns(*roles: str) -> tuple[ChatTurn, ...]:
    return tuple(ChatTurn(role=r, content=f"{r} {k}") for k, r in enumerate(roles))


def test_worked_examples_may_hold_tool_exchanges():
    DataConfig(example_turns=turns("user", "assistant", "tool", "assistant"))
    DataConfig(example_turns=turns("user", "assistant", "tool", "assistant", "tool", "assistant", "user", "assistant"))


@pytest.mark.parametrize(
    ("roles", "message"),
    [
        (("user", "tool", "assistant"), "unbalanced tool exchange at message 1"),
        (("user", "assistant", "tool"), "unbalanced tool exchange at message 2"),
        (("tool", "assistant"), "unbalanced tool exchange at message 0"),
        (("user", "assistant", "assistant"), "must alternate user and assistant"),
        (("user", "assistant", "user"), "must alternate user and assistant"),
    ],
)
def test_unbalanced_examples_are_refused(roles, message):
    with pytest.raises(ValueError, match=message):
        DataConfig(example_turns=turns(*roles))


def test_tools_need_a_template_that_renders_them():
    tokenizer = build_tokenizer()  # plain ChatML: no tool support
    data = DataConfig(prompt_file=None, tools=(CALCULATOR,))
    assert data.tools[0]["type"] == "function"  # a bare function schema gets its wrapper
    with pytest.raises(ReinforgeError, match=r"has no tool support.*\['calculator'\]"):
        build_prompt_set(data, tokenizer, [{"problem": "What is 2 + 2?", "answer": "4"}])
    with pytest.raises(ValueError, match=r"tools\[0\] must be a function schema"):
        DataConfig(tools=({"type": "function"},))


def test_tools_reach_the_prompt_and_the_bridge():
    tokenizer = build_tokenizer()
    tokenizer.chat_template = WITH_TOOLS
    data = DataConfig(prompt_file=None, tools=(CALCULATOR,), example_turns=turns("user", "assistant", "tool", "assistant"))
    prompts, _ = build_prompt_set(data, tokenizer, [{"problem": "What is 2 + 2?", "answer": "4"}])
    text = tokenizer.decode(prompts[0]["input_ids"])
    assert text.startswith("<|im_start|>system\nTools: calculator <|im_end|>\n<|im_start|>user\nuser 0<|im_end|>\n")
    assert "<|im_start|>tool\ntool 2<|im_end|>" in text
    bridge = TurnBridge(tokenizer, tools=[dict(t) for t in data.tools])
    assert bridge.text({"role": "tool", "content": "4"}) == "<|im_end|>\n<|im_start|>tool\n4<|im_end|>\n<|im_start|>assistant\n"
