"""Metrics over n sampled answers per prompt: pass@k, avg@k and cons@k (majority vote).

All three are estimated from n >= k samples rather than by drawing exactly k, which would
waste n - k samples and add variance: pass@k uses the unbiased estimator of Chen et al. (2021),
cons@k averages over all k-subsets of the n samples (exactly for n <= 64, by counting; beyond, from
random subsets, and then reported as `cons@k_estimate`). The batch helpers take the flat, prompt-major
lists that evaluation produces (each prompt's n samples adjacent) and average over prompts.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from typing import TypeVar

T = TypeVar("T")

# cons@k is exact up to this many samples per prompt; beyond, it averages over random (seeded) k-subsets.
EXACT_CONS_MAX_SAMPLES = 64
DEFAULT_ESTIMATE_SUBSETS = 10_000


def _check_k(n: int, k: int) -> None:
    if n < 1:
        raise ValueError("need at least one sample")
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, n] with n = {n} samples, got k = {k}")


def pass_at_k(correct: Sequence[bool], k: int) -> float:
    """Probability that at least one of k samples drawn without replacement from the n is correct.

    1 - C(n - c, k) / C(n, k) with c correct among n: unbiased for the pass@k of the model,
    unlike 1 - (1 - c/n)^k. Exact integer arithmetic, so large n loses nothing.
    """
    n, c = len(correct), sum(bool(x) for x in correct)
    _check_k(n, k)
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def avg_at_k(correct: Sequence[bool]) -> float:
    """Mean correctness over the n samples (avg@n, i.e. pass@1 estimated from n samples)."""
    if not correct:
        raise ValueError("need at least one sample")
    return sum(bool(x) for x in correct) / len(correct)


def majority_answer(answers: Sequence[T]) -> T:
    """The most frequent answer; a tie goes to the answer seen first."""
    counts: dict[T, int] = {}
    for answer in answers:
        counts[answer] = counts.get(answer, 0) + 1
    best, best_count = answers[0], 0
    for answer, count in counts.items():  # insertion order = first-seen order
        if count > best_count:
            best, best_count = answer, count
    return best


def _winning_subsets(answers: Sequence[Hashable], k: int, winners: set[Hashable]) -> int:
    """How many k-subsets of the samples elect an answer in `winners` (majority; ties: first seen in sample order).

    Counted, not enumerated. Fix the winner a, its count j in the subset and its first chosen
    sample p: the rest of a's j comes from its samples after p, and every other answer b takes
    x_b < j samples anywhere, or exactly j samples all after p (then a, seen first, wins the tie).
    The ways for the others to fill the remaining k - j places are the coefficient of t^(k-j) in
    prod_b (sum_{x<j} C(c_b, x) t^x + C(after_b(p), j) t^j). Exact integers throughout.
    """
    positions: dict[Hashable, list[int]] = {}
    for index, answer in enumerate(answers):
        positions.setdefault(answer, []).append(index)
    total = 0
    for winner in winners:
        mine = positions.get(winner, [])
        others = [spots for answer, spots in positions.items() if answer != winner]
        for rank, first in enumerate(mine):
            after_first = len(mine) - rank - 1  # the winner's samples after its first chosen one
            for j in range(1, min(after_first + 1, k) + 1):
                rest = k - j
                ways = [1] + [0] * rest  # ways[x]: the other answers fill x places
                for spots in others:
                    later = sum(1 for spot in spots if spot > first)
                    terms = [math.comb(len(spots), x) for x in range(min(j - 1, rest) + 1)]
                    if j <= rest:
                        terms.append(math.comb(later, j))
                    ways = [
                        sum(ways[x - y] * terms[y] for y in range(min(x, len(terms) - 1) + 1)) for x in range(rest + 1)
                    ]
                total += math.comb(after_first, j - 1) * ways[rest]
    return total


def _random_subsets(n: int, k: int, count: int, rng: random.Random) -> Iterator[tuple[int, ...]]:
    """`count` random k-subsets of range(n), each sorted (sample order decides ties)."""
    for _ in range(count):
        yield tuple(sorted(rng.sample(range(n), k)))


def cons_at_k_is_exact(n: int, exact_up_to: int = EXACT_CONS_MAX_SAMPLES) -> bool:
    """Whether `cons_at_k` over n samples per prompt is exact (else a Monte-Carlo estimate)."""
    return n <= exact_up_to


def cons_metric_name(k: int, n: int, exact_up_to: int = EXACT_CONS_MAX_SAMPLES) -> str:
    """`cons@k`, or `cons@k_estimate` when n samples per prompt are beyond the exact computation."""
    return f"cons@{k}" if cons_at_k_is_exact(n, exact_up_to) else f"cons@{k}_estimate"


def cons_at_k(
    answers: Sequence[Hashable],
    correct_of_answer: Mapping[Hashable, bool] | Callable[[Hashable], bool],
    k: int,
    *,
    exact_up_to: int = EXACT_CONS_MAX_SAMPLES,
    estimate_subsets: int = DEFAULT_ESTIMATE_SUBSETS,
    seed: int = 0,
) -> float:
    """Share of k-subsets of the n answers whose majority answer is correct (ties: the first seen in sample order).

    Exact for n <= `exact_up_to` (64 by default), counted combinatorially over the answers'
    counts and positions rather than by listing the C(n, k) subsets. Beyond that, a Monte-Carlo
    average over `estimate_subsets` subsets drawn with `random.Random(seed)` (reproducible);
    `cons_metric_name` then names the metric `cons@k_estimate`.
    Answers are compared as given: normalise them first ("4" vs "4.0") or they split the vote.
    `correct_of_answer` maps an answer to its correctness (a dict, or a function such as a verifier).
    """
    n = len(answers)
    _check_k(n, k)
    if estimate_subsets < 1:
        raise ValueError(f"estimate_subsets must be >= 1, got {estimate_subsets}")
    judge = correct_of_answer.__getitem__ if isinstance(correct_of_answer, Mapping) else correct_of_answer
    verdicts = {answer: bool(judge(answer)) for answer in dict.fromkeys(answers)}
    if cons_at_k_is_exact(n, exact_up_to):
        winners = {answer for answer, verdict in verdicts.items() if verdict}
        return _winning_subsets(answers, k, winners) / math.comb(n, k)
    rng = random.Random(seed)
    subsets = _random_subsets(n, k, estimate_subsets, rng)
    hits = sum(verdicts[majority_answer([answers[i] for i in subset])] for subset in subsets)
    return hits / estimate_subsets


def _per_prompt(values: Sequence[T], num_samples_per_prompt: int) -> list[Sequence[T]]:
    """Split a prompt-major flat list into consecutive runs of n samples."""
    n = num_samples_per_prompt
    if n < 1 or len(values) % n:
        raise ValueError(f"{len(values)} samples do not split into groups of num_samples_per_prompt = {n}")
    return [values[i : i + n] for i in range(0, len(values), n)]


def batch_pass_at_k(correct: Sequence[bool], num_samples_per_prompt: int, k: int) -> float:
    """pass@k per prompt (n = num_samples_per_prompt adjacent samples each), averaged over prompts."""
    groups = _per_prompt(correct, num_samples_per_prompt)
    return sum(pass_at_k(group, k) for group in groups) / len(groups)


def batch_avg_at_k(correct: Sequence[bool], num_samples_per_prompt: int) -> float:
    """avg@n per prompt, averaged over prompts (equal to the flat mean, since every prompt has n samples)."""
    groups = _per_prompt(correct, num_samples_per_prompt)
    return sum(avg_at_k(group) for group in groups) / len(groups)


def batch_cons_at_k(
    answers: Sequence[Hashable],
    correct: Sequence[bool],
    num_samples_per_prompt: int,
    k: int,
    *,
    exact_up_to: int = EXACT_CONS_MAX_SAMPLES,
    estimate_subsets: int = DEFAULT_ESTIMATE_SUBSETS,
    seed: int = 0,
) -> float:
    """cons@k per prompt, averaged over prompts; `correct[i]` is the verdict on `answers[i]`.

    Within a prompt an answer's correctness is taken from its first sample (a deterministic
    verifier gives equal answers equal verdicts). When estimated, prompt p draws its subsets with seed `seed + p`.
    """
    if len(answers) != len(correct):
        raise ValueError(f"{len(answers)} answers but {len(correct)} verdicts")
    answer_groups = _per_prompt(answers, num_samples_per_prompt)
    verdict_groups = _per_prompt(correct, num_samples_per_prompt)
    scores = []
    for p, (group, verdicts) in enumerate(zip(answer_groups, verdict_groups, strict=True)):
        verdict_of: dict[Hashable, bool] = {}
        for answer, verdict in zip(group, verdicts, strict=True):
            verdict_of.setdefault(answer, bool(verdict))
        scores.append(
            cons_at_k(group, verdict_of, k, exact_up_to=exact_up_to, estimate_subsets=estimate_subsets, seed=seed + p)
        )
    return sum(scores) / len(scores)
