"""Seeded arithmetic and linear-equation problems with exact answers.

Why: the project's tests, demos and tiny-model warm-up need a verifiable task that is
generated locally (no dataset download), is reproducible from a seed, and is easy enough for
a 10 M-parameter model on a CPU. Every record is `{"problem": str, "answer": str}`; the
answer is an exact integer written in decimal, so any reward function can check it.

Within one call the problems are distinct, and `exclude` / `split_records` keep training and
evaluation problems apart, so a held-out accuracy really is held out.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path

from reinforge.core.errors import ReinforgeError

Record = dict[str, str]

KNOWN_OPS = ("+", "-", "*", "/")
KNOWN_KINDS = ("arith", "linear")
# Largest coefficient of x in a linear equation: keeps the division step easy.
_MAX_COEFFICIENT = 9

_ARITH_RE = re.compile(r"^What is (-?\d+) ([-+*/]) (-?\d+)\?$")
_LINEAR_RE = re.compile(r"^Solve for x: (\d+)x ([-+]) (\d+) = (-?\d+)$")
_BOXED = "\\boxed{"


def make_arithmetic_records(
    n: int,
    *,
    seed: int = 0,
    ops: Iterable[str] = ("+", "-", "*"),
    max_operand: int = 20,
    kinds: Iterable[str] = ("arith",),
    allow_negative: bool = False,
    exclude: Collection[str] = (),
) -> list[Record]:
    """Return `n` distinct problems, the same list for the same arguments.

    `ops` are the operators of "arith" problems ("What is 7 + 12?"); "/" gives exact integer
    divisions. "linear" problems ("Solve for x: 3x + 4 = 19") use `+` and `-` forms whatever
    `ops` says. Operands are drawn from 0..max_operand; unless `allow_negative`, no answer
    (or right-hand side) is negative. Problems whose text is in `exclude` are never returned,
    which is how an evaluation set is kept disjoint from a training set.
    """
    ops, kinds = tuple(ops), tuple(kinds)
    _validate(n, ops, kinds, max_operand)
    families = [_arith_family(op, max_operand, allow_negative) for op in ops if "arith" in kinds]
    if "linear" in kinds:
        families += [_linear_family(sign, max_operand, allow_negative) for sign in ("+", "-")]
    rng = random.Random(seed)
    seen: set[str] = set()
    records: list[Record] = []
    attempts = 100 * n + 10_000
    while len(records) < n and attempts > 0:
        attempts -= 1
        problem, answer = rng.choice(families)(rng)
        if problem in seen or problem in exclude:
            continue
        seen.add(problem)
        records.append({"problem": problem, "answer": answer})
    if len(records) < n:
        raise ReinforgeError(
            f"could only draw {len(records)} distinct problems of the {n} asked for "
            f"(ops={ops}, kinds={kinds}, max_operand={max_operand}, {len(exclude)} excluded); "
            "ask for fewer records, raise max_operand, or add ops or kinds."
        )
    return records


def _validate(n: int, ops: tuple[str, ...], kinds: tuple[str, ...], max_operand: int) -> None:
    problems = []
    if n < 0:
        problems.append(f"n must be >= 0, got {n}")
    if max_operand < 1:
        problems.append(f"max_operand must be >= 1, got {max_operand}")
    unknown_kinds = [k for k in kinds if k not in KNOWN_KINDS]
    if unknown_kinds or not kinds:
        problems.append(f"kinds must be a non-empty subset of {KNOWN_KINDS}, got {kinds}")
    unknown_ops = [o for o in ops if o not in KNOWN_OPS]
    if unknown_ops or ("arith" in kinds and not ops):
        problems.append(f"ops must be a non-empty subset of {KNOWN_OPS}, got {ops}")
    if problems:
        raise ReinforgeError("invalid arithmetic problem settings: " + "; ".join(problems) + ".")


Family = Callable[[random.Random], tuple[str, str]]


def _arith_family(op: str, max_operand: int, allow_negative: bool) -> Family:
    def draw(rng: random.Random) -> tuple[str, str]:
        a, b = rng.randint(0, max_operand), rng.randint(0, max_operand)
        if op == "+":
            result = a + b
        elif op == "-":
            if not allow_negative and a < b:
                a, b = b, a
            result = a - b
        elif op == "*":
            result = a * b
        else:  # "/": build the dividend from the quotient so the division is exact
            b = max(b, 1)
            a, result = a * b, a
        return f"What is {a} {op} {b}?", str(result)

    return draw


def _linear_family(sign: str, max_operand: int, allow_negative: bool) -> Family:
    def draw(rng: random.Random) -> tuple[str, str]:
        coefficient = rng.randint(2, max(2, min(_MAX_COEFFICIENT, max_operand)))
        x = rng.randint(0, max_operand)
        b = rng.randint(1, max_operand)
        rhs = coefficient * x + b if sign == "+" else coefficient * x - b
        if rhs < 0 and not allow_negative:  # a*x - b < 0: flip to the "+" form instead
            sign_used, rhs = "+", coefficient * x + b
        else:
            sign_used = sign
        return f"Solve for x: {coefficient}x {sign_used} {b} = {rhs}", str(x)

    return draw


def worked_solution(record: Mapping[str, str]) -> str:
    """A short worked answer ending in `\\boxed{answer}`: the target text for SFT and warm-up.

    "What is 7 + 12?" -> "7 + 12 = 19. The answer is \\boxed{19}."
    "Solve for x: 3x + 4 = 19" -> "3x = 19 - 4 = 15, so x = 15 / 3 = 5. The answer is \\boxed{5}."
    """
    problem, answer = record["problem"], record["answer"]
    if match := _ARITH_RE.match(problem):
        a, op, b = match.groups()
        return f"{a} {op} {b} = {answer}. The answer is \\boxed{{{answer}}}."
    if match := _LINEAR_RE.match(problem):
        coefficient, sign, b, rhs = match.groups()
        undo = "-" if sign == "+" else "+"
        product = int(coefficient) * int(answer)
        return (
            f"{coefficient}x = {rhs} {undo} {b} = {product}, so x = {product} / {coefficient} = {answer}. "
            f"The answer is \\boxed{{{answer}}}."
        )
    raise ReinforgeError(
        f"cannot write a worked solution for {problem!r}: it is not a problem made by "
        "make_arithmetic_records ('What is A op B?' or 'Solve for x: Ax + B = C')."
    )


def extract_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` in `text` (nested braces allowed), or None."""
    start = text.rfind(_BOXED)
    if start < 0:
        return None
    depth, i = 1, start + len(_BOXED)
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j].strip()
    return None


def split_records(
    records: list[Record], val_fraction: float, *, seed: int = 0
) -> tuple[list[Record], list[Record]]:
    """Split into (train, validation) by problem text, so no problem lands in both.

    Duplicated problems stay together; each split keeps the input order. The split is a
    seeded shuffle of the distinct problems, so it is the same for the same seed.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ReinforgeError(f"val_fraction must be in [0, 1), got {val_fraction}; use e.g. 0.1 for 10 % validation.")
    problems = list(dict.fromkeys(r["problem"] for r in records))
    random.Random(seed).shuffle(problems)
    n_val = round(len(problems) * val_fraction)
    if val_fraction > 0 and n_val == 0 and len(problems) > 1:
        n_val = 1
    val_problems = set(problems[:n_val])
    train = [r for r in records if r["problem"] not in val_problems]
    val = [r for r in records if r["problem"] in val_problems]
    return train, val


def write_jsonl(records: Iterable[Mapping[str, object]], path: str | Path) -> Path:
    """Write one JSON object per line (UTF-8), creating parent folders; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def read_jsonl(path: str | Path) -> list[dict[str, object]]:
    """Read what `write_jsonl` wrote (blank lines are skipped)."""
    path = Path(path)
    if not path.is_file():
        raise ReinforgeError(f"no JSONL file at {path}; check the path (write one with write_jsonl).")
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
