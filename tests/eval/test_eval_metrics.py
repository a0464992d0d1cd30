"""pass@k, avg@k and cons@k against hand-worked values; cons@k also against brute-force enumeration."""

from __future__ import annotations

import math
import random
from collections import Counter
from fractions import Fraction
from itertools import combinations

import pytest

from reinforge.rollouts.metrics import (
    avg_at_k,
    batch_avg_at_k,
    batch_cons_at_k,
    batch_pass_at_k,
    cons_at_k,
    cons_metric_name,
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


def brute_force_cons(answers: list[str], correct: set[str], k: int) -> Fraction:
    """Every k-subset, majority by Counter.most_common (ties: first seen in the subset, as NeMo-RL's eval)."""
    subsets = list(combinations(range(len(answers)), k))
    wins = sum(Counter(answers[i] for i in subset).most_common(1)[0][0] in correct for subset in subsets)
    return Fraction(wins, len(subsets))


def test_cons_counting_equals_enumeration_on_random_small_cases() -> None:
    rng = random.Random(6)
    for _ in range(400):
        n = rng.randint(1, 11)
        alphabet = "ABCDEF"[: rng.randint(1, 6)]
        answers = [rng.choice(alphabet) for _ in range(n)]
        correct = {a for a in alphabet if rng.random() < 0.4}
        k = rng.randint(1, n)
        expected = brute_force_cons(answers, correct, k)
        assert cons_at_k(answers, lambda a, c=correct: a in c, k) == pytest.approx(float(expected), abs=1e-15), (
            answers,
            correct,
            k,
        )


def test_cons_at_8_of_16_exact() -> None:
    answers = list("ABACBDABCABDCABA")  # A 6, B 5, C 3, D 2
    # 7822 of the C(16, 8) = 12870 subsets elect A
    assert brute_force_cons(answers, {"A"}, 8) == Fraction(7822, 12870)
    assert cons_at_k(answers, {"A": True, "B": False, "C": False, "D": False}, 8) == pytest.approx(7822 / 12870, abs=1e-15)
    assert cons_at_k(answers, {"A": False, "B": True, "C": False, "D": False}, 8) == pytest.approx(
        float(brute_force_cons(answers, {"B"}, 8)), abs=1e-15
    )


def test_cons_all_distinct_answers_elect_the_first_chosen_sample() -> None:
    # every subset is a tie of ones, won by its earliest sample: sample 0 wins iff chosen, k / n of the time
    answers = [str(i) for i in range(64)]
    assert cons_at_k(answers, lambda a: a == "0", 32) == 0.5
    assert cons_at_k(answers, lambda a: a == "63", 32) == 0.0  # never the earliest of 32
    # sample 31 wins iff chosen with 31 of the 32 later ones
    assert cons_at_k(answers, lambda a: a == "31", 32) == pytest.approx(32 / math.comb(64, 32), rel=1e-12)


def test_cons_beyond_64_samples_is_a_seeded_estimate_and_named_so() -> None:
    rng = random.Random(1)
    answers = [rng.choice("AAB") for _ in range(80)]
    estimate = cons_at_k(answers, {"A": True, "B": False}, 9, estimate_subsets=2000, seed=3)
    assert estimate == cons_at_k(answers, {"A": True, "B": False}, 9, estimate_subsets=2000, seed=3)
    exact = cons_at_k(answers, {"A": True, "B": False}, 9, exact_up_to=80)
    assert estimate == pytest.approx(exact, abs=0.03)
    assert cons_metric_name(8, 64) == "cons@8" and cons_metric_name(8, 65) == "cons@8_estimate"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: pass_at_k([True], 2), "k must be in"),
        (lambda: pass_at_k([], 1), "at least one"),
        (lambda: batch_pass_at_k([1, 0, 1], 2, 1), "groups of num_samples_per_prompt"),
        (lambda: batch_cons_at_k(["A"], [True, False], 1, 1), "verdicts"),
        (lambda: cons_at_k(["A"], {"A": True}, 1, estimate_subsets=0), "estimate_subsets"),
    ],
)
def test_invalid_arguments(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
