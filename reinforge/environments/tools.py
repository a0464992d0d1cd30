"""Tool-call helpers for tool-using environments: parse the model's calls, answer them as messages.

    from reinforge.environments import tools

    calls = tools.parse_tool_calls(reply, format="hermes")   # [ToolCall(name="calculator", arguments={...})]
    message = tools.tool_message("42")                       # {"role": "tool", "content": "42"}

Two formats:
- `hermes`: `<tool_call>{"name": "calculator", "arguments": {"expression": "2+3"}}</tool_call>`, the format
  of Hermes, Qwen2.5 and Qwen3 chat templates (which render `data.tools` for the model);
- `tagged`: `<calculator>2+3</calculator>`, a tag named after the tool around its raw input, short enough for
  a small model to learn from one worked example; the input arrives as `arguments["input"]`.

A call that cannot be read raises `ToolCallError` with a message meant for the model (an environment
sends it back as the tool's answer and counts it); nothing here evaluates anything.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import attrs

ToolFormat = Literal["hermes", "tagged"]
FORMATS: tuple[str, ...] = ("hermes", "tagged")
_HERMES_OPEN, _HERMES_CLOSE = "<tool_call>", "</tool_call>"


class ToolCallError(ValueError):
    """A tool call that cannot be read; its message is written for the model."""


@attrs.define(frozen=True)
class ToolCall:
    """One call: the tool's name and its arguments (a JSON object; `{"input": text}` in the tagged format)."""

    name: str
    arguments: dict[str, Any] = attrs.field(factory=dict)


def parse_tool_calls(text: str, format: ToolFormat = "hermes", *, names: Sequence[str] = ()) -> list[ToolCall]:  # noqa: A002
    """The tool calls in `text`, in order; [] when there is none. `names`: the tools of the tagged format.

    Raises `ToolCallError` for a call that is started but unreadable (unclosed, not JSON, no name).
    """
    if format == "hermes":
        return _parse_hermes(text)
    if format == "tagged":
        if not names:
            raise ValueError("the tagged tool-call format needs the tool names (names=...)")
        return _parse_tagged(text, names)
    raise ValueError(f"unknown tool-call format {format!r}; known: {', '.join(FORMATS)}")


def stop_strings(format: ToolFormat = "hermes", *, names: Sequence[str] = ()) -> tuple[str, ...]:  # noqa: A002
    """The strings that end a tool call: generation stops there, and the environment answers."""
    if format == "hermes":
        return (_HERMES_CLOSE,)
    return tuple(f"</{name}>" for name in names)


def format_tool_call(call: ToolCall, format: ToolFormat = "hermes") -> str:  # noqa: A002
    """`call` as the model writes it (for worked examples)."""
    if format == "hermes":
        return f"{_HERMES_OPEN}\n{json.dumps({'name': call.name, 'arguments': call.arguments})}\n{_HERMES_CLOSE}"
    return f"<{call.name}>{call.arguments.get('input', '')}</{call.name}>"


def tool_message(content: str, *, role: str = "tool") -> dict[str, str]:
    """A tool's result as the message appended to the conversation (templates with tool support render role "tool")."""
    return {"role": role, "content": str(content)}


def _parse_hermes(text: str) -> list[ToolCall]:
    calls = []
    pos = 0
    while (start := text.find(_HERMES_OPEN, pos)) >= 0:
        end = text.find(_HERMES_CLOSE, start)
        if end < 0:
            raise ToolCallError(f"error: the tool call is not closed; write {_HERMES_OPEN}{{...}}{_HERMES_CLOSE}")
        body = text[start + len(_HERMES_OPEN) : end].strip()
        pos = end + len(_HERMES_CLOSE)
        try:
            payload = json.loads(body)
        except ValueError:
            raise ToolCallError(
                'error: the tool call is not JSON; write {"name": "<tool>", "arguments": {...}}'
            ) from None
        if not isinstance(payload, Mapping) or not isinstance(payload.get("name"), str):
            raise ToolCallError('error: the tool call has no "name"; write {"name": "<tool>", "arguments": {...}}')
        arguments = payload.get("arguments", {})
        if isinstance(arguments, str):  # some models write the arguments as a JSON string
            try:
                arguments = json.loads(arguments)
            except ValueError:
                raise ToolCallError('error: "arguments" must be a JSON object') from None
        if not isinstance(arguments, Mapping):
            raise ToolCallError('error: "arguments" must be a JSON object')
        calls.append(ToolCall(payload["name"], dict(arguments)))
    return calls


def _parse_tagged(text: str, names: Sequence[str]) -> list[ToolCall]:
    pattern = re.compile(r"<(" + "|".join(re.escape(n) for n in names) + r")>")
    calls = []
    pos = 0
    while (match := pattern.search(text, pos)) is not None:
        name = match.group(1)
        close = f"</{name}>"
        end = text.find(close, match.end())
        if end < 0:
            raise ToolCallError(f"error: the tool call is not closed; write <{name}>...{close}")
        calls.append(ToolCall(name, {"input": text[match.end() : end].strip()}))
        pos = end + len(close)
    return calls
