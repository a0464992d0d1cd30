"""pass@k, avg@k and cons@k against hand-worked values."""

from __future__ import annotations

import pytest

from reinforge.eval.metrics import (
    avg_at_k,
    batch_avg_at_k,
    batch_cons_at_k,
    batch_pass_at_k,
    cons_at_k,
    majority_answer,
    pass_at_k,
)


def test_pass_at_k() -> None:
    assert pass_at_k([True, False, True], 1) == pytest.approx(2 / 3)
    assert pass_at_k([1, 1, 0, 0, 0], 2) == pytest.approx(1 - 3 / 10)  # 1 - C(3,2)/C(5,2)
    assert pass_at_k([1, 0, 0], 3) == 1.0
    assert pass_at_k([0, 0, 0], 2) == 0.0


def test_batch_pass_and_avg() -> None:
    correct = [1, 0, 1, 0, 1, 0]
    assert batch_pass_at_k(correct, 3, 1) == pytest.approx(0.5)  # (2/3 + 1/3) / 2
    assert batch_avg_at_k(correct, 3) == pytest.approx(0.5)
    assert avg_at_k([1, 1, 0, 1]) == pytest.approx(0.75)
    assert batch_pass_at_k([1, 0, 0, 0, 0, 0], 3, 2) == pytest.approx((2 / 3 + 0) / 2)


def test_cons_at_1_and_ties_go_to_first_seen() -> None:
    assert cons_at_k(["A", "B", "A"], {"A": True, "B": False}, 1) == pytest.approx(2 / 3)
    assert majority_answer(["B", "A"]) == "B"
    assert cons_at_k(["B", "A"], {"A": True, "B": False}, 2) == 0.0
    assert cons_at_k(["A", "B"], lambda answer: answer == "A", 2) == 1.0


def test_cons_at_3_of_5_exhaustive() -> None:
    # 10 subsets of [A, A, B, B, C]; B wins {0,2,3}, {1,2,3}, {2,3,4}; A wins the rest (ABC ties go to A)
    answers = ["A", "A", "B", "B", "C"]
    assert cons_at_k(answers, {"A": True, "B": False, "C": False}, 3) == pytest.approx(0.7)
    assert cons_at_k(answers, {"A": False, "B": True, "C": False}, 3) == pytest.approx(0.3)
    flat = answers + ["B", "A", "A", "A", "C"]
    correct = [True, True, False, False, False] + [False, True, True, True, False]
    # prompt 2 [B, A, A, A, C]: B wins only {0,1,4}, {0,2,4}, {0,3,4} (one vote each, B seen first)
    assert batch_cons_at_k(flat, correct, 5, 3) == pytest.approx((0.7 + 0.7) / 2)


def test_cons_sampled_subsets_are_seeded_and_close_to_exact() -> None:
    answers = ["A"] * 8 + ["B"] * 6
    correct_of = {"A": True, "B": False}
    exact = cons_at_k(answers, correct_of, 7)  # C(14, 7) = 3432 subsets
    sampled = cons_at_k(answers, correct_of, 7, max_subsets=1000, seed=3)
    assert sampled == cons_at_k(answers, correct_of, 7, max_subsets=1000, seed=3)
    assert sampled == pytest.approx(exact, abs=0.05)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: pass_at_k([True], 2), "k must be in"),
        (lambda: pass_at_k([], 1), "at least one"),
        (lambda: batch_pass_at_k([1, 0, 1], 2, 1), "groups of num_samples_per_prompt"),
        (lambda: batch_cons_at_k(["A"], [True, False], 1, 1), "verdicts"),
        (lambda: cons_at_k(["A"], {"A": True}, 1, max_subsets=0), "max_subsets"),
    ],
)
def test_invalid_arguments(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
