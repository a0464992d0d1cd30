"""Metrics over n sampled answers per prompt: pass@k, avg@k and cons@k (majority vote).

All three are estimated from n >= k samples rather than by drawing exactly k, which would
waste n - k samples and add variance: pass@k uses the unbiased estimator of Chen et al. (2021),
cons@k averages over k-subsets of the n samples. The batch helpers take the flat, prompt-major
lists that evaluation produces (each prompt's n samples adjacent) and average over prompts.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from typing import TypeVar

T = TypeVar("T")

# Above this many k-subsets, cons@k averages over this many random (seeded) subsets instead of all.
DEFAULT_MAX_SUBSETS = 10_000


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


def _subsets(n: int, k: int, max_subsets: int, rng: random.Random) -> Iterator[tuple[int, ...]]:
    """All k-subsets of range(n) if there are at most `max_subsets`, else `max_subsets` random ones (sorted)."""
    if math.comb(n, k) <= max_subsets:
        yield from itertools.combinations(range(n), k)
        return
    for _ in range(max_subsets):
        yield tuple(sorted(rng.sample(range(n), k)))


def cons_at_k(
    answers: Sequence[Hashable],
    correct_of_answer: Mapping[Hashable, bool] | Callable[[Hashable], bool],
    k: int,
    *,
    max_subsets: int = DEFAULT_MAX_SUBSETS,
    seed: int = 0,
) -> float:
    """Share of k-subsets of the n answers whose majority answer is correct (ties: the first seen in sample order).

    Exact (every subset) when C(n, k) <= `max_subsets`; otherwise a Monte-Carlo average over
    `max_subsets` subsets drawn with `random.Random(seed)`, so the value is reproducible.
    Answers are compared as given: normalise them first ("4" vs "4.0") or they split the vote.
    `correct_of_answer` maps an answer to its correctness (a dict, or a function such as a verifier).
    """
    _check_k(len(answers), k)
    if max_subsets < 1:
        raise ValueError(f"max_subsets must be >= 1, got {max_subsets}")
    judge = correct_of_answer.__getitem__ if isinstance(correct_of_answer, Mapping) else correct_of_answer
    verdicts: dict[Hashable, bool] = {}
    hits = total = 0
    for subset in _subsets(len(answers), k, max_subsets, random.Random(seed)):
        winner = majority_answer([answers[i] for i in subset])
        if winner not in verdicts:
            verdicts[winner] = bool(judge(winner))
        hits += verdicts[winner]
        total += 1
    return hits / total


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
    max_subsets: int = DEFAULT_MAX_SUBSETS,
    seed: int = 0,
) -> float:
    """cons@k per prompt, averaged over prompts; `correct[i]` is the verdict on `answers[i]`.

    Within a prompt an answer's correctness is taken from its first sample (a deterministic
    verifier gives equal answers equal verdicts). Prompt p samples its subsets with seed `seed + p`.
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
        scores.append(cons_at_k(group, verdict_of, k, max_subsets=max_subsets, seed=seed + p))
    return sum(scores) / len(scores)
