from __future__ import annotations

import re

import pytest

from reinforge.core.errors import ReinforgeError
from reinforge.data.arithmetic import (
    extract_boxed,
    make_arithmetic_records,
    read_jsonl,
    split_records,
    worked_solution,
    write_jsonl,
)

ARITH = re.compile(r"^What is (-?\d+) ([-+*/]) (-?\d+)\?$")
LINEAR = re.compile(r"^Solve for x: (\d+)x ([-+]) (\d+) = (-?\d+)$")


def evaluate(problem: str) -> int:
    """The answer computed independently from the problem text."""
    if m := ARITH.match(problem):
        a, op, b = int(m[1]), m[2], int(m[3])
        if op == "/":
            assert a % b == 0, problem
            return a // b
        return {"+": a + b, "-": a - b, "*": a * b}[op]
    m = LINEAR.match(problem)
    assert m, problem
    coefficient, sign, b, rhs = int(m[1]), m[2], int(m[3]), int(m[4])
    numerator = rhs - b if sign == "+" else rhs + b
    assert numerator % coefficient == 0, problem
    return numerator // coefficient


def test_same_seed_same_records_other_seed_other_records():
    first = make_arithmetic_records(50, seed=3)
    assert first == make_arithmetic_records(50, seed=3)
    assert first != make_arithmetic_records(50, seed=4)


def test_answers_are_exact_for_every_op_and_kind():
    records = make_arithmetic_records(400, seed=1, ops=("+", "-", "*", "/"), kinds=("arith", "linear"))
    assert {r["problem"].split()[0] for r in records} == {"What", "Solve"}
    assert {m[2] for r in records if (m := ARITH.match(r["problem"]))} == {"+", "-", "*", "/"}
    for record in records:
        assert set(record) == {"problem", "answer"}
        assert record["answer"] == str(evaluate(record["problem"]))


def test_problems_are_distinct_within_bounds_and_non_negative_by_default():
    records = make_arithmetic_records(300, seed=0, ops=("+", "-"), max_operand=20)
    assert len({r["problem"] for r in records}) == 300
    for record in records:
        a, _, b = ARITH.match(record["problem"]).groups()
        assert 0 <= int(a) <= 20 and 0 <= int(b) <= 20
        assert int(record["answer"]) >= 0


def test_allow_negative_gives_negative_differences():
    records = make_arithmetic_records(200, seed=0, ops=("-",), allow_negative=True)
    assert any(int(r["answer"]) < 0 for r in records)
    assert all(r["answer"] == str(evaluate(r["problem"])) for r in records)


def test_the_whole_space_can_be_drawn_and_no_more():
    # "+" with operands 0..2 has exactly 9 problems.
    assert len(make_arithmetic_records(9, ops=("+",), max_operand=2)) == 9
    with pytest.raises(ReinforgeError, match="distinct problems"):
        make_arithmetic_records(10, ops=("+",), max_operand=2)


def test_exclude_keeps_a_validation_set_out():
    validation = make_arithmetic_records(64, seed=12345, max_operand=20)
    train = make_arithmetic_records(500, seed=0, max_operand=20, exclude={r["problem"] for r in validation})
    assert not {r["problem"] for r in train} & {r["problem"] for r in validation}


@pytest.mark.parametrize(
    "kwargs",
    [{"ops": ("^",)}, {"kinds": ("calculus",)}, {"max_operand": 0}, {"kinds": ()}],
)
def test_bad_settings_are_user_errors(kwargs):
    with pytest.raises(ReinforgeError, match="invalid arithmetic problem settings"):
        make_arithmetic_records(5, **kwargs)


def test_split_is_disjoint_complete_and_seeded():
    records = make_arithmetic_records(200, seed=0)
    records = records + records[:20]  # duplicated problems must land on one side only
    train, val = split_records(records, 0.25, seed=7)
    assert not {r["problem"] for r in train} & {r["problem"] for r in val}
    assert len(train) + len(val) == len(records)
    assert len({r["problem"] for r in val}) == 50
    assert (train, val) == split_records(records, 0.25, seed=7)
    assert val != split_records(records, 0.25, seed=8)[1]
    with pytest.raises(ReinforgeError, match="val_fraction"):
        split_records(records, 1.0)


def test_worked_solutions_end_in_the_boxed_answer():
    assert worked_solution({"problem": "What is 7 + 12?", "answer": "19"}) == "7 + 12 = 19. The answer is \\boxed{19}."
    assert worked_solution({"problem": "Solve for x: 3x + 4 = 19", "answer": "5"}) == (
        "3x = 19 - 4 = 15, so x = 15 / 3 = 5. The answer is \\boxed{5}."
    )
    assert worked_solution({"problem": "Solve for x: 2x - 3 = 7", "answer": "5"}).startswith("2x = 7 + 3 = 10,")
    for record in make_arithmetic_records(100, seed=2, ops=("+", "-", "*", "/"), kinds=("arith", "linear")):
        assert extract_boxed(worked_solution(record)) == record["answer"]
    with pytest.raises(ReinforgeError, match="worked solution"):
        worked_solution({"problem": "What is the meaning of life?", "answer": "42"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is \\boxed{19}.", "19"),
        ("\\boxed{1} then \\boxed{ 2 }", "2"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("no box here", None),
        ("\\boxed{unclosed", None),
    ],
)
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


def test_jsonl_round_trip(tmp_path):
    records = make_arithmetic_records(10, seed=0)
    path = write_jsonl(records, tmp_path / "nested" / "train.jsonl")
    assert path.read_text(encoding="utf-8").count("\n") == 10
    assert read_jsonl(path) == records
    with pytest.raises(ReinforgeError, match="no JSONL file"):
        read_jsonl(tmp_path / "missing.jsonl")


def test_every_offline_reader_runs_with_its_default_config():
    """`data.dataset: arithmetic` without options (the DataConfig default) must run: it once asked for 1000 of 608 problems."""
    from reinforge.core.registry import Registry

    registry = Registry.create()
    for name, expected in (("arithmetic", 500), ("arithmetic_sft", 500), ("arithmetic_preferences", 500)):
        records = list(registry.dataset(name)())
        assert len(records) == expected, name
    validation = registry.dataset("arithmetic")(registry.config_class("dataset", "arithmetic")(split="validation"))
    train = registry.dataset("arithmetic")()
    assert len(validation) == 64 and not {r["problem"] for r in validation} & {r["problem"] for r in train}
