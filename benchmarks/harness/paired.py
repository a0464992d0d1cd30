"""Paired comparison of two frameworks' rewards over seeds: the pure arithmetic of benchmarks/reward_parity.py.

One seed runs both frameworks on the same problems in the same order; they differ in their sampled tokens and
so in their learning trajectories. A step's mean reward moves by several hundredths from sampling alone, so one
seed says little: the claim "reinforge learns at least as well as TRL" is a statement about the mean over seeds
of the per-seed difference, with its 95 % Student-t interval. Nothing here runs a model, so
tests/benchmarks/test_reward_parity.py pins every number by hand.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

# Two-sided 95 % quantiles of Student's t (the 0.975 quantile) for 1..30 degrees of freedom. Past 30 the value
# for 30 is used, which makes the interval a little wider than exact (conservative), never narrower.
T_975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t_975(degrees_of_freedom: int) -> float:
    if degrees_of_freedom < 1:
        raise ValueError(f"a t interval needs at least 1 degree of freedom (2 seeds), got {degrees_of_freedom}")
    return T_975[min(degrees_of_freedom, len(T_975)) - 1]


def window_mean(curve: Sequence[float], last: int | None = None) -> float:
    """The mean of a reward curve, or of its `last` steps; an error when the curve is shorter than that."""
    if not curve:
        raise ValueError("an empty reward curve has no mean")
    if last is not None:
        if not 1 <= last <= len(curve):
            raise ValueError(f"the last {last} steps of a {len(curve)}-step curve")
        curve = curve[-last:]
    return statistics.fmean(float(v) for v in curve)


def paired_difference(a: Sequence[float], b: Sequence[float], margin: float) -> dict[str, Any]:
    """Per-seed differences a_i - b_i, their mean, sample sd, standard error and 95 % t interval; wins/losses/ties
    of a; and whether a is non-inferior to b by `margin`: the interval's lower end above -margin (a one-sided test
    at 2.5 %). `margin` is chosen before the runs; it is not fitted to them."""
    if len(a) != len(b):
        raise ValueError(f"{len(a)} values of a but {len(b)} of b: a paired comparison needs one of each per seed")
    if margin < 0:
        raise ValueError(f"a non-inferiority margin is >= 0, got {margin}")
    differences = [float(x) - float(y) for x, y in zip(a, b)]
    n = len(differences)
    mean = statistics.fmean(differences)
    sd = statistics.stdev(differences) if n > 1 else math.nan
    se = sd / math.sqrt(n) if n > 1 else math.nan
    half = t_975(n - 1) * se if n > 1 else math.nan
    return {
        "n": n,
        "differences": differences,
        "mean": mean,
        "sd": sd,
        "se": se,
        "ci95": [mean - half, mean + half],
        "wins": sum(d > 0 for d in differences),
        "losses": sum(d < 0 for d in differences),
        "ties": sum(d == 0 for d in differences),
        "margin": margin,
        "non_inferior": bool(n > 1 and mean - half > -margin),
    }


def mean_curve(curves: Sequence[Sequence[float]]) -> list[float]:
    """The step-by-step mean of several seeds' curves (over the steps all of them have)."""
    length = min((len(c) for c in curves), default=0)
    return [statistics.fmean(float(c[i]) for c in curves) for i in range(length)]


def summary(
    curves: Mapping[str, Mapping[int, Sequence[float]]], a: str, b: str, *, last: int, margin: float
) -> dict[str, Any]:
    """`curves[framework][seed]` -> the reward curves of both over the seeds both ran: per-seed means over all
    steps and over the `last` steps, the paired differences of a - b for each, and the mean curves."""
    seeds = sorted(set(curves[a]) & set(curves[b]))
    if not seeds:
        raise ValueError(f"no seed has curves of both {a} and {b}")
    out: dict[str, Any] = {"seeds": seeds, "frameworks": [a, b], "last": last}
    for window, size in (("all_steps", None), (f"last_{last}", last)):
        means = {name: [window_mean(curves[name][s], size) for s in seeds] for name in (a, b)}
        out[window] = {"per_seed": means, "difference": paired_difference(means[a], means[b], margin)}
    out["mean_curve"] = {name: mean_curve([curves[name][s] for s in seeds]) for name in (a, b)}
    return out
