"""The `calculator` environment: a math problem, a calculator tool, and the `math` verifier for the answer.

Each turn the environment reads the last assistant message. A tool call (in the `hermes` or
`tagged` format, `reinforge.environments.tools`) is evaluated by the `ast`-whitelist evaluator of
`reinforge.environments.safe_arithmetic` and answered as a tool message; the conversation goes on,
and the next turn stops at the end of the next call (`next_stop_strings`). A reply without a call is
the final answer: its last `\\boxed{}` is scored by the `math` environment (`MathEnvironment`,
reused as it is), which sets the reward, `correct` and `info["extracted_answer"]`. With
`numeric_answer` (the default) that `\\boxed{}` must hold a number: math-verify evaluates what it
parses, so `\\boxed{964 * 404}` would otherwise score as right, and a model learns to restate the
question instead of calling the tool. Such answers score 0 and are counted in
`env/non_numeric_answers`.

A malformed or rejected call (unknown tool, bad arguments, a name, attribute or call in the
expression, a huge power, too deep or too long) is answered with an error message the model can
read and counted in `env/invalid_tool_calls`; it never raises. The environment keeps no state: it
answers from the last message alone, so any worker can take any turn.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import attrs
from attrs import validators as v

from reinforge.core.config import doc
from reinforge.core.interfaces import EnvironmentStep
from reinforge.environments.math import MathEnvironment, MathEnvironmentConfig, extract_boxed_answer
from reinforge.environments.safe_arithmetic import ArithmeticLimits, CalculatorError, evaluate_expression, format_number
from reinforge.environments.tools import ToolCall, ToolCallError, parse_tool_calls, stop_strings, tool_message


def _verifier() -> MathEnvironmentConfig:
    return MathEnvironmentConfig(num_workers=1, require_boxed=True)


@attrs.define(kw_only=True, frozen=True)
class CalculatorConfig:
    """Options of the `calculator` environment."""

    format: Literal["hermes", "tagged"] = doc(
        "how the model calls the tool: hermes (<tool_call>{\"name\": \"calculator\", \"arguments\": {\"expression\": "
        "\"2+3\"}}</tool_call>) or tagged (<calculator>2+3</calculator>)",
        default="hermes",
        validator=v.in_(("hermes", "tagged")),
    )
    tool_name: str = doc("the tool's name (hermes: the call's name; tagged: the tag)", default="calculator")
    observation_role: str = doc("role of the tool's answers (tool; user for templates that render no tool role)", default="tool")
    max_calls_per_turn: int = doc("calls answered per assistant message; more are errors", default=4, validator=v.ge(1))
    invalid_call_penalty: float = doc(
        "reward subtracted per invalid call (reward component invalid_call); 0 = only the answer counts",
        default=0.0,
        validator=v.ge(0.0),
    )
    limits: ArithmeticLimits = doc("what one expression may cost (length, depth, exponent, result size)", factory=ArithmeticLimits)
    numeric_answer: bool = doc(
        "the final \\boxed{} must hold a number (sign, digits, thousands commas, decimals); anything else scores 0 "
        "(math-verify would evaluate \\boxed{964 * 404} and call it right)",
        default=True,
    )
    verifier: MathEnvironmentConfig = doc("the math environment that scores the final \\boxed{} answer", factory=_verifier)


@attrs.define
class _Turn:
    """What one conversation's last message asked for."""

    answer: str | None = None  # the tool's answer (None: the message is a final answer)
    calls: int = 0
    invalid: int = 0


class CalculatorEnvironment:
    """See the module docstring."""

    summed_metrics = ("tool_calls", "invalid_tool_calls", "final_answers", "correct_answers", "non_numeric_answers")

    def __init__(self, config: CalculatorConfig | None = None) -> None:
        self.config = config if config is not None else CalculatorConfig()
        self.verifier = MathEnvironment(self.config.verifier)

    @property
    def observation_roles(self) -> tuple[str, ...]:
        """The role of every observation: checked against the chat template when a run starts."""
        return (self.config.observation_role,)

    def step(self, conversations: list[list[dict[str, str]]], metadata: list[dict[str, Any]]) -> EnvironmentStep:
        n = len(conversations)
        turns = [self.answer(_last_reply(c)) for c in conversations]
        final = [i for i, t in enumerate(turns) if t.answer is None]
        rewards, info, correct = [0.0] * n, [{} for _ in range(n)], [False] * n
        non_numeric = []
        if self.config.numeric_answer:
            boxed = {i: extract_boxed_answer(_last_reply(conversations[i])) for i in final}
            non_numeric = [i for i in final if boxed[i] is not None and not is_number(boxed[i])]
            for i in non_numeric:
                info[i] = {"extracted_answer": boxed[i], "non_numeric_answer": True}
            final = [i for i in final if i not in non_numeric]
        scored = self.verifier.step([[_question(metadata[i]), {"role": "assistant", "content": _last_reply(conversations[i])}]
                                     for i in final], [metadata[i] for i in final]) if final else None
        for k, i in enumerate(final):
            assert scored is not None
            rewards[i], info[i], correct[i] = scored.rewards[k], dict(scored.info[k]), bool(scored.correct[k]) if scored.correct else False
        penalty = self.config.invalid_call_penalty
        stops = list(stop_strings(self.config.format, names=(self.config.tool_name,)))
        return EnvironmentStep(
            rewards=[rewards[i] - penalty * t.invalid for i, t in enumerate(turns)],
            observations=[None if t.answer is None else tool_message(t.answer, role=self.config.observation_role) for t in turns],
            done=[t.answer is None for t in turns],
            metrics={
                "tool_calls": float(sum(t.calls for t in turns)),
                "invalid_tool_calls": float(sum(t.invalid for t in turns)),
                "final_answers": float(len(final) + len(non_numeric)),
                "correct_answers": float(sum(correct)),
                "non_numeric_answers": float(len(non_numeric)),
            },
            info=info,
            correct=correct,
            next_stop_strings=[None if t.answer is None else stops for t in turns],
            reward_components=[{"answer": rewards[i], "invalid_call": -penalty * t.invalid} for i, t in enumerate(turns)],
        )

    def answer(self, reply: str) -> _Turn:
        """The tool's answer to the calls in `reply` (errors included), or a final answer (no call)."""
        try:
            calls = parse_tool_calls(reply, self.config.format, names=(self.config.tool_name,))
        except ToolCallError as exc:
            return _Turn(answer=str(exc), calls=1, invalid=1)
        if not calls:
            return _Turn()
        lines, invalid = [], 0
        for k, call in enumerate(calls):
            if k >= self.config.max_calls_per_turn:
                lines.append(f"error: at most {self.config.max_calls_per_turn} calls per message")
                invalid += len(calls) - k
                break
            try:
                lines.append(self.evaluate(call))
            except CalculatorError as exc:
                lines.append(str(exc))
                invalid += 1
        return _Turn(answer="\n".join(lines), calls=len(calls), invalid=invalid)

    def evaluate(self, call: ToolCall) -> str:
        """One call's result as text; a CalculatorError for anything the calculator refuses."""
        if call.name != self.config.tool_name:
            raise CalculatorError(f"error: unknown tool {call.name[:40]!r}; the only tool is {self.config.tool_name!r}")
        expression = call.arguments.get("expression", call.arguments.get("input"))
        if not isinstance(expression, str):
            raise CalculatorError('error: the call needs an "expression" (text), e.g. {"expression": "12 * 34"}')
        try:
            return format_number(evaluate_expression(expression, self.config.limits))
        except CalculatorError:
            raise
        except (ArithmeticError, ValueError, TypeError, RecursionError, MemoryError) as exc:  # a limit we did not foresee
            raise CalculatorError(f"error: cannot compute this ({type(exc).__name__})") from None

    def shutdown(self) -> None:
        self.verifier.shutdown()


_NUMBER = re.compile(r"[-+−]?\s*(\d{1,3}(,\d{3})+|\d+)(\.\d+)?|[-+−]?\s*\.\d+")


def is_number(answer: str) -> bool:
    """Whether a boxed answer is a plain number: sign, digits (thousands commas allowed), decimals, nothing else."""
    return _NUMBER.fullmatch(answer.strip().replace("\\!", "").replace("{,}", ",")) is not None


def _last_reply(conversation: list[dict[str, str]]) -> str:
    return next((str(m["content"]) for m in reversed(conversation) if m.get("role") == "assistant"), "")


def _question(meta: dict[str, Any]) -> dict[str, str]:
    return {"role": "user", "content": str(meta.get("problem", ""))}
