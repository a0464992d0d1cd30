"""A two-turn calculator environment: the model may ask for one calculation, then answers.

Turn 1: a reply holding `<calc>12 * 7</calc>` gets the result back as the next user message,
`<result>84</result>`, and the conversation goes on. A reply without a call (or a call past
`max_calls`) is final: reward 1 when its last `\\boxed{...}` equals the gold answer, else 0.
Only + - * / // % and parentheses on numbers are evaluated (no `eval`).
"""

from __future__ import annotations

import ast
import operator
import re
from dataclasses import dataclass, field
from typing import Any

import reinforge as rf

_CALL = re.compile(r"<calc>(.*?)</calc>", re.DOTALL)
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_OPERATORS = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.USub: operator.neg, ast.UAdd: operator.pos,
}


@dataclass(frozen=True)
class CalculatorConfig:
    max_calls: int = field(default=1, metadata={"doc": "calculator calls answered per conversation"})
    answer_key: str = field(default="answer", metadata={"doc": "metadata key holding the gold answer"})


def calculate(expression: str) -> str:
    """The value of an arithmetic expression as text, or `error: ...` (never raises)."""
    if len(expression) > 200:
        return "error: expression too long"
    try:
        value = _evaluate(ast.parse(expression.strip(), mode="eval").body)
    except (SyntaxError, ValueError, ZeroDivisionError, TypeError) as exc:
        return f"error: {type(exc).__name__}"
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        if abs(node.value) > 1e12:
            raise ValueError("number too large")
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_evaluate(node.left), _evaluate(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_evaluate(node.operand))
    raise ValueError(f"not arithmetic: {type(node).__name__}")


class CalculatorEnvironment:
    def __init__(self, config: CalculatorConfig | None = None) -> None:
        self.config = config or CalculatorConfig()

    def step(self, conversations: list[list[dict[str, str]]], metadata: list[dict[str, Any]]) -> rf.EnvironmentStep:
        rewards, observations, done, correct, info = [], [], [], [], []
        for conversation, meta in zip(conversations, metadata, strict=True):
            reply = conversation[-1]["content"] if conversation and conversation[-1]["role"] == "assistant" else ""
            calls = sum(1 for m in conversation[:-1] if m["role"] == "assistant" and _CALL.search(m["content"]))
            call = _CALL.search(reply)
            if call is not None and calls < self.config.max_calls:
                result = calculate(call.group(1))
                rewards.append(0.0)
                observations.append({"role": "user", "content": f"<result>{result}</result>"})
                done.append(False)
                correct.append(False)
                info.append({"calculation": call.group(1).strip(), "result": result})
                continue
            boxed = _BOXED.findall(reply)
            answer = boxed[-1].strip() if boxed else ""
            right = bool(answer) and answer == str(meta.get(self.config.answer_key, "")).strip()
            rewards.append(1.0 if right else 0.0)
            observations.append(None)
            done.append(True)
            correct.append(right)
            info.append({"extracted_answer": answer})
        calls_made = sum(not d for d in done)
        return rf.EnvironmentStep(
            rewards=rewards, observations=observations, done=done, correct=correct, info=info,
            metrics={"calculator_calls": calls_made / max(len(done), 1)},
        )

    def shutdown(self) -> None:
        pass
