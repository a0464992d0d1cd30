"""Tool-call parsing: the hermes and tagged formats, and what an unreadable call says."""

from __future__ import annotations

import pytest

import reinforge as rf
from reinforge.environments.tools import ToolCall, ToolCallError, format_tool_call, parse_tool_calls, stop_strings, tool_message


def test_hermes_calls_in_order_with_object_or_string_arguments():
    text = (
        'First <tool_call>\n{"name": "calculator", "arguments": {"expression": "2+3"}}\n</tool_call> then '
        '<tool_call>{"name": "search", "arguments": "{\\"q\\": \\"x\\"}"}</tool_call>'
    )
    assert parse_tool_calls(text) == [ToolCall("calculator", {"expression": "2+3"}), ToolCall("search", {"q": "x"})]
    assert parse_tool_calls("no call here") == []


def test_tagged_calls_need_the_tool_names():
    text = "<calculator> 12*3 </calculator> <other>1</other>"
    assert parse_tool_calls(text, "tagged", names=["calculator"]) == [ToolCall("calculator", {"input": "12*3"})]
    with pytest.raises(ValueError, match="needs the tool names"):
        parse_tool_calls(text, "tagged")
    with pytest.raises(ToolCallError, match="not closed"):
        parse_tool_calls("<calculator>1+", "tagged", names=["calculator"])
    with pytest.raises(ValueError, match="unknown tool-call format 'xml'"):
        parse_tool_calls(text, "xml")


def test_round_trip_stop_strings_and_messages():
    call = ToolCall("calculator", {"expression": "7*6"})
    for fmt, arguments in (("hermes", call.arguments), ("tagged", {"input": "7*6"})):
        written = format_tool_call(ToolCall("calculator", arguments), fmt)
        assert parse_tool_calls(written, fmt, names=["calculator"]) == [ToolCall("calculator", arguments)]
        assert written.endswith(stop_strings(fmt, names=["calculator"])[0])
    assert tool_message(42) == {"role": "tool", "content": "42"}
    assert rf.environments.tools.parse_tool_calls is parse_tool_calls  # public as rf.environments.tools
