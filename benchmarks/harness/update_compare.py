"""Comparing two frameworks' optimizer steps taken on the same rollouts (pure; no framework imported).

The weights after a step are compared through the *update* each framework made, `after - before`: two
correct implementations give the same update up to float32 rounding, while the weights themselves agree to
about the learning rate whatever the update was (so comparing weights alone would hide a wrong step).
`update_difference` gives ||dA - dB|| / ||dB|| over all tensors the two share.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

Weights = Mapping[str, torch.Tensor]


class ReplayMismatch(RuntimeError):
    """The framework replaying another's responses was handed different prompts than the one that sampled them."""


def check_same_prompts(recorded: Sequence[Sequence[int]], given: Sequence[Sequence[int]], step: int) -> None:
    """Raise `ReplayMismatch` unless `given` is `recorded`, row for row (the prompt token ids of one step)."""
    if len(recorded) != len(given):
        raise ReplayMismatch(f"step {step}: {len(given)} prompts to replay, but {len(recorded)} were sampled")
    for row, (want, got) in enumerate(zip(recorded, given)):
        if list(want) != list(got):
            raise ReplayMismatch(
                f"step {step}, row {row}: the prompt token ids differ ({len(got)} tokens here, {len(want)} when "
                f"sampled; first difference at token {_first_difference(want, got)})"
            )


def _first_difference(a: Sequence[int], b: Sequence[int]) -> int:
    for index, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return index
    return min(len(a), len(b))


def shared_names(a: Weights, b: Weights) -> list[str]:
    """Tensor names in both, sorted; shapes must agree (a shape difference is a programming error)."""
    names = sorted(set(a) & set(b))
    for name in names:
        if a[name].shape != b[name].shape:
            raise ValueError(f"{name}: shape {tuple(a[name].shape)} vs {tuple(b[name].shape)}")
    return names


def update_difference(before_a: Weights, after_a: Weights, before_b: Weights, after_b: Weights) -> dict[str, Any]:
    """How far framework A's update (after_a - before_a) is from B's, over the tensors all four hold (float64).

    Returns `relative` (||dA - dB|| / ||dB||), `max_abs` (largest |dA - dB| element), `norm_a`, `norm_b`
    (the update norms), `cosine` between the two updates, `worst_tensor` (the name with the largest
    relative difference) and its `worst_relative`, and `tensors` (how many were compared).
    """
    names = [n for n in shared_names(after_a, after_b) if n in before_a and n in before_b]
    if not names:
        raise ValueError("the two frameworks share no tensor names")
    diff_sq = a_sq = b_sq = dot = 0.0
    max_abs = 0.0
    worst_name, worst = names[0], -1.0
    for name in names:
        da = after_a[name].double() - before_a[name].double()
        db = after_b[name].double() - before_b[name].double()
        gap = da - db
        gap_sq = float((gap * gap).sum())
        db_sq = float((db * db).sum())
        diff_sq += gap_sq
        a_sq += float((da * da).sum())
        b_sq += db_sq
        dot += float((da * db).sum())
        max_abs = max(max_abs, float(gap.abs().max()) if gap.numel() else 0.0)
        relative = math.sqrt(gap_sq / db_sq) if db_sq > 0 else (0.0 if gap_sq == 0 else math.inf)
        if relative > worst:
            worst_name, worst = name, relative
    return {
        "relative": math.sqrt(diff_sq / b_sq) if b_sq > 0 else (0.0 if diff_sq == 0 else math.inf),
        "max_abs": max_abs,
        "norm_a": math.sqrt(a_sq),
        "norm_b": math.sqrt(b_sq),
        "cosine": dot / math.sqrt(a_sq * b_sq) if a_sq > 0 and b_sq > 0 else math.nan,
        "worst_tensor": worst_name,
        "worst_relative": worst,
        "tensors": len(names),
    }


def max_abs_difference(a: Sequence[float], b: Sequence[float]) -> float:
    """Largest |a_i - b_i| of two equal-length sequences."""
    if len(a) != len(b):
        raise ValueError(f"lengths differ: {len(a)} vs {len(b)}")
    return max((abs(float(x) - float(y)) for x, y in zip(a, b)), default=0.0)


def relative_difference(a: float, b: float) -> float:
    """|a - b| / |b| (0 when both are 0; inf when only b is)."""
    if b == 0:
        return 0.0 if a == 0 else math.inf
    return abs(a - b) / abs(b)
