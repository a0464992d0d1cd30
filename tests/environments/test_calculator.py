"""The calculator: its evaluator against a reference, every rejected construct, and the environment's turns."""

from __future__ import annotations

import random

import pytest

from reinforge.core.env_guard import guard_environment
from reinforge.environments.calculator import CalculatorConfig, CalculatorEnvironment, is_number
from reinforge.environments.safe_arithmetic import ArithmeticLimits, CalculatorError, evaluate_expression, format_number
from reinforge.environments.tools import ToolCall, format_tool_call

# ------------------------------------------------------------------ the evaluator


def random_expression(rng: random.Random, depth: int) -> str:
    if depth == 0 or rng.random() < 0.3:
        return str(rng.randint(0, 99))
    op = rng.choice(["+", "-", "*", "/", "//", "%", "**", "neg"])
    if op == "neg":
        return f"-({random_expression(rng, depth - 1)})"
    if op == "**":
        return f"({random_expression(rng, depth - 1)}) ** {rng.randint(0, 3)}"
    return f"({random_expression(rng, depth - 1)}) {op} ({random_expression(rng, depth - 1)})"


def test_the_evaluator_agrees_with_python_on_random_valid_expressions():
    rng = random.Random(0)
    limits = ArithmeticLimits(max_chars=10_000, max_digits=300)
    checked = 0
    for _ in range(2000):
        text = random_expression(rng, 4)
        try:
            expected = eval(text, {"__builtins__": {}})  # noqa: S307 - the test's own generated arithmetic
        except (ZeroDivisionError, OverflowError):
            with pytest.raises(CalculatorError):
                evaluate_expression(text, limits)
            continue
        if isinstance(expected, complex):
            with pytest.raises(CalculatorError, match="not a real number"):
                evaluate_expression(text, limits)
            continue
        assert evaluate_expression(text, limits) == expected, text
        checked += 1
    assert checked > 1500


def test_numbers_are_formatted_for_the_model():
    assert format_number(evaluate_expression("512 * 37")) == "18944"
    assert format_number(evaluate_expression("7 / 2")) == "3.5"
    assert format_number(evaluate_expression("6 / 3")) == "2"
    assert format_number(evaluate_expression("1 / 3")) == "0.333333333333"
    assert format_number(evaluate_expression(" -(2 ** 10) + 7 % 4 ")) == "-1021"


DEEP = "(" * 10_000 + "1" + ")" * 10_000
MALICIOUS = [
    ("__import__('os')", "function calls are not allowed"),
    ("__import__('os').system('ls')", "function calls are not allowed"),
    ("(1).__class__", "attributes are not allowed"),
    ("().__class__.__bases__[0].__subclasses__()", "function calls are not allowed"),
    ("x + 1", "names are not allowed"),
    ("abs(-3)", "function calls are not allowed"),
    ("[1, 2][0]", "subscripts are not allowed"),
    ("'ab' * 3", "is not a number"),
    ("True + 1", "is not a number"),
    ("1j * 1j", "is not a number"),
    ("(1, 2)", "Tuple is not allowed"),
    ("lambda: 1", "Lambda is not allowed"),
    ("1 if 1 else 2", "IfExp is not allowed"),
    ("[x for x in (1, 2)]", "ListComp is not allowed"),
    ("f'{1}'", "JoinedStr is not allowed"),
    ("1 < 2", "Compare is not allowed"),
    ("1 << 4000", "BinOp is not allowed"),
    ("9**9**9", "exponents are limited"),
    ("2 ** 1000", "exponents are limited"),
    ("10 ** 61", "more than 60 digits"),
    ("99999999999 ** 6", "more than 60 digits"),
    ("10**50 * 10**50", "more than 60 digits"),
    ("1e400", "out of range"),
    ("1e300 * 1e300", "out of range"),
    ("1 / 0", "division by zero"),
    ("5 // 0", "division by zero"),
    ("5 % 0", "division by zero"),
    ("0 ** -1", "division by zero"),
    ("(-8) ** 0.5", "not a real number"),
    (DEEP, "longer than 200 characters"),
    ("1+" * 500_000 + "1", "longer than 200 characters"),  # about 1 MB
    ("", "not an arithmetic expression"),
    ("1 +", "not an arithmetic expression"),
    ("\x00", "not an arithmetic expression"),
    ("import os", "not an arithmetic expression"),
]


@pytest.mark.parametrize(("text", "message"), MALICIOUS, ids=[m for _, m in MALICIOUS])
def test_every_rejected_construct_is_a_message_for_the_model(text, message):
    with pytest.raises(CalculatorError, match=message) as caught:
        evaluate_expression(text)
    assert str(caught.value).startswith("error: ") and len(str(caught.value)) < 200


def test_depth_is_limited_before_parsing_and_while_walking():
    wide = ArithmeticLimits(max_chars=100_000)
    with pytest.raises(CalculatorError, match="nested deeper than 64"):
        evaluate_expression(DEEP, wide)  # ast.parse never sees 10,000 parentheses
    with pytest.raises(CalculatorError, match="nested deeper than 64"):
        evaluate_expression("-" * 100 + "1", wide)  # no parentheses, a deep tree of unary minus
    with pytest.raises(CalculatorError, match="not an arithmetic expression"):
        evaluate_expression("-" * 5000 + "1", wide)  # deeper than the parser's own recursion limit: still a message
    with pytest.raises(CalculatorError, match="nested deeper than 64"):
        evaluate_expression("+".join(["1"] * 200), wide)  # a long left-deep chain
    assert evaluate_expression("+".join(["1"] * 60), wide) == 60


# ------------------------------------------------------------------ the environment


def hermes(expression: str) -> str:
    return "Let me compute.\n" + format_tool_call(ToolCall("calculator", {"expression": expression}))


@pytest.fixture(scope="module")
def calculator():
    env = CalculatorEnvironment(CalculatorConfig(invalid_call_penalty=0.1))
    yield env
    env.shutdown()


def conversation(*replies: str) -> list[dict[str, str]]:
    messages = [{"role": "user", "content": "What is 512 * 37?"}]
    for reply in replies:
        messages += [{"role": "assistant", "content": reply}, {"role": "tool", "content": "..."}]
    return messages[:-1]


def test_a_tool_call_is_answered_and_the_final_answer_is_verified(calculator):
    meta = {"problem": "What is 512 * 37?", "answer": "18944"}
    step = calculator.step(
        [conversation(hermes("512 * 37")), conversation(hermes("512*37"), "So \\boxed{18944}."), conversation("\\boxed{18000}")],
        [meta] * 3,
    )
    assert step.observations[0] == {"role": "tool", "content": "18944"}
    assert step.done == [False, True, True]
    assert step.rewards == [0.0, 1.0, 0.0] and step.correct == [False, True, False]
    assert step.info[1]["extracted_answer"] == "18944"
    assert step.next_stop_strings == [["</tool_call>"], None, None]
    assert step.metrics == {"tool_calls": 1.0, "invalid_tool_calls": 0.0, "final_answers": 2.0, "correct_answers": 1.0,
                            "non_numeric_answers": 0.0}
    assert step.reward_components[1] == {"answer": 1.0, "invalid_call": 0.0}


def test_a_boxed_expression_is_not_an_answer(calculator):
    # math-verify evaluates what it parses: \boxed{512 * 37} would be "right" without any arithmetic done
    meta = {"problem": "What is 512 * 37?", "answer": "18944"}
    replies = ["\\boxed{512 * 37}", "\\boxed{512 \\times 37}", "\\boxed{18,944}", "\\boxed{18944}", "no box at all"]
    step = calculator.step([conversation(r) for r in replies], [meta] * len(replies))
    assert step.rewards == [0.0, 0.0, 1.0, 1.0, 0.0]
    assert step.correct == [False, False, True, True, False]
    assert step.info[0] == {"extracted_answer": "512 * 37", "non_numeric_answer": True}
    assert step.metrics["non_numeric_answers"] == 2.0 and step.metrics["final_answers"] == 5.0
    lenient = CalculatorEnvironment(CalculatorConfig(numeric_answer=False))
    try:
        assert lenient.step([conversation(replies[0])], [meta]).rewards == [1.0]  # the hole the default closes
    finally:
        lenient.shutdown()


@pytest.mark.parametrize(("answer", "number"), [("5535", True), ("-12", True), ("1,234,567", True), ("3.25", True),
                                                ("1{,}234", True), ("12,34", False), ("964 * 404", False),
                                                ("\\frac{1}{2}", False), ("", False), ("x", False)])
def test_what_counts_as_a_number(answer, number):
    assert is_number(answer) is number


@pytest.mark.parametrize(("text", "message"), MALICIOUS[:12] + MALICIOUS[17:31], ids=[m for _, m in MALICIOUS[:12] + MALICIOUS[17:31]])
def test_malicious_calls_become_counted_error_messages_never_exceptions(calculator, text, message):
    guarded = guard_environment(calculator, name="calculator")
    step = guarded.step([conversation(hermes(text))], [{"problem": "q", "answer": "1"}])
    assert step.done == [False] and message in step.observations[0]["content"]
    assert step.metrics["invalid_tool_calls"] == 1.0 and step.metrics["failures"] == 0.0
    assert step.rewards == [pytest.approx(-0.1)] and step.reward_components == [{"answer": 0.0, "invalid_call": pytest.approx(-0.1)}]


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ("<tool_call>{\"name\": \"calculator\", \"arguments\": {\"expression\": \"1+1\"}}", "not closed"),
        ("<tool_call>calculator(1+1)</tool_call>", "not JSON"),
        ("<tool_call>{\"arguments\": {}}</tool_call>", "no \"name\""),
        ("<tool_call>{\"name\": \"shell\", \"arguments\": {\"cmd\": \"ls\"}}</tool_call>", "unknown tool 'shell'"),
        ("<tool_call>{\"name\": \"calculator\", \"arguments\": {\"expression\": 5}}</tool_call>", "needs an \"expression\""),
        ("<tool_call>{\"name\": \"calculator\", \"arguments\": [1]}</tool_call>", "must be a JSON object"),
    ],
)
def test_malformed_calls_are_answered_with_what_to_fix(calculator, reply, message):
    step = calculator.step([conversation(reply)], [{"problem": "q", "answer": "1"}])
    assert message in step.observations[0]["content"] and step.metrics["invalid_tool_calls"] == 1.0


def test_the_tagged_format_and_too_many_calls():
    env = CalculatorEnvironment(CalculatorConfig(format="tagged", max_calls_per_turn=2))
    step = env.step([conversation("<calculator>3 * 4</calculator> and <calculator>2**3</calculator> <calculator>1</calculator>")],
                    [{"problem": "q", "answer": "1"}])
    assert step.observations[0]["content"] == "12\n8\nerror: at most 2 calls per message"
    assert step.metrics["tool_calls"] == 3.0 and step.metrics["invalid_tool_calls"] == 1.0
    assert step.next_stop_strings == [["</calculator>"]]
    assert env.observation_roles == ("tool",)
    env.shutdown()
