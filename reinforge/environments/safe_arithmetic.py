"""Arithmetic from untrusted text, with an `ast` whitelist and limits: the calculator tool's evaluator.

What a model writes in a tool call is untrusted input: `eval` would run `__import__('os')`, and even
plain arithmetic can hang a worker (`9**9**9`) or exhaust memory. So the expression is parsed with
`ast` and walked by hand, allowing only numbers, `+ - * / // % **`, unary signs and parentheses:
no names, attributes, calls or subscripts. Before any work is done, and before each operation, the
limits are checked: expression length, nesting depth, exponent size and result size. Every
rejection is a `CalculatorError` whose message is written for the model; nothing else escapes.
"""

from __future__ import annotations

import ast
import math
import operator

import attrs
from attrs import validators as v

from reinforge.core.config import doc

Number = int | float


class CalculatorError(ValueError):
    """The expression was rejected or cannot be computed; the message is meant for the model."""


@attrs.define(kw_only=True, frozen=True)
class ArithmeticLimits:
    """What one expression may cost."""

    max_chars: int = doc("longest expression, in characters (checked before parsing)", default=200, validator=v.ge(1))
    max_depth: int = doc("deepest nesting of parentheses and operations", default=64, validator=v.ge(1))
    max_exponent: int = doc("largest |b| in a ** b", default=64, validator=v.ge(1))
    max_digits: int = doc(
        "largest result, in decimal digits (integers) or orders of magnitude (floats)", default=60, validator=[v.ge(1), v.le(300)]
    )


_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FORBIDDEN = {
    ast.Name: "names are not allowed",
    ast.Attribute: "attributes are not allowed",
    ast.Call: "function calls are not allowed",
    ast.Subscript: "subscripts are not allowed",
}
_ALLOWED = "only numbers, + - * / // % **, signs and parentheses"


def evaluate_expression(expression: str, limits: ArithmeticLimits | None = None) -> Number:
    """The value of `expression`, or a `CalculatorError` saying why not (see the module docstring)."""
    limits = limits or ArithmeticLimits()
    if not isinstance(expression, str):
        raise CalculatorError(f"error: the expression must be text, got {type(expression).__name__}")
    if len(expression) > limits.max_chars:
        raise CalculatorError(f"error: the expression is longer than {limits.max_chars} characters")
    if _paren_depth(expression) > limits.max_depth:  # before ast.parse, whose own limits are a C recursion
        raise CalculatorError(f"error: the expression is nested deeper than {limits.max_depth} levels")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise CalculatorError(f"error: not an arithmetic expression ({_ALLOWED})") from None
    return _Evaluator(limits).eval(tree.body, 1)


def format_number(value: Number) -> str:
    """A result as the tool answers it: integers exactly, floats to 12 significant digits."""
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.12g}"
    return str(value)


def _paren_depth(text: str) -> int:
    depth = deepest = 0
    for char in text:
        if char in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")]}":
            depth -= 1
    return deepest


class _Evaluator:
    def __init__(self, limits: ArithmeticLimits) -> None:
        self.limits = limits
        self.max_bits = math.ceil(limits.max_digits * math.log2(10))

    def eval(self, node: ast.AST, depth: int) -> Number:
        if depth > self.limits.max_depth:
            raise CalculatorError(f"error: the expression is nested deeper than {self.limits.max_depth} levels")
        if type(node) in _FORBIDDEN:
            raise CalculatorError(f"error: {_FORBIDDEN[type(node)]} ({_ALLOWED})")
        if isinstance(node, ast.Constant):
            if type(node.value) not in (int, float):  # bool, str, complex, None, bytes, Ellipsis
                raise CalculatorError(f"error: {node.value!r} is not a number ({_ALLOWED})")
            return self.checked(node.value)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return self.checked(_UNARY[type(node.op)](self.eval(node.operand, depth + 1)))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = self.eval(node.left, depth + 1), self.eval(node.right, depth + 1)
            return self.checked(self.apply(node.op, left, right))
        raise CalculatorError(f"error: {type(node).__name__} is not allowed ({_ALLOWED})")

    def apply(self, op: ast.operator, a: Number, b: Number) -> Number:
        if isinstance(op, (ast.Div, ast.FloorDiv, ast.Mod)) and b == 0:
            raise CalculatorError("error: division by zero")
        if isinstance(op, ast.Pow):
            self.check_power(a, b)
        elif isinstance(op, ast.Mult) and isinstance(a, int) and isinstance(b, int):
            if a.bit_length() + b.bit_length() > self.max_bits + 1:
                raise CalculatorError(f"error: the result has more than {self.limits.max_digits} digits")
        try:
            result = _BINARY[type(op)](a, b)
        except (OverflowError, ZeroDivisionError, ValueError) as exc:
            raise CalculatorError(f"error: cannot compute this ({type(exc).__name__})") from None
        if isinstance(result, complex):  # (-8) ** 0.5
            raise CalculatorError("error: the result is not a real number")
        return result

    def check_power(self, base: Number, exponent: Number) -> None:
        if abs(exponent) > self.limits.max_exponent:
            raise CalculatorError(f"error: exponents are limited to {self.limits.max_exponent} in absolute value")
        if base == 0 and exponent < 0:
            raise CalculatorError("error: division by zero")
        if abs(base) > 1 and exponent > 0 and exponent * math.log10(abs(base)) > self.limits.max_digits:
            raise CalculatorError(f"error: the result has more than {self.limits.max_digits} digits")

    def checked(self, value: Number) -> Number:
        if isinstance(value, int):
            if value.bit_length() > self.max_bits:
                raise CalculatorError(f"error: the result has more than {self.limits.max_digits} digits")
            return value
        if not math.isfinite(value) or (value != 0 and abs(value) >= 10.0**self.limits.max_digits):
            raise CalculatorError(f"error: the result is out of range (more than {self.limits.max_digits} digits)")
        return value
