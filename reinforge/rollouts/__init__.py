"""Rollouts: generate -> environment turns -> scored rollouts; refit-when-stale, wake/sleep; group
collection (dynamic sampling) and evaluation (pass@k, avg@k, cons@k), shared by GRPO and `reinforge eval`."""

from __future__ import annotations

from reinforge.rollouts.evaluation import Evaluation, evaluate
from reinforge.rollouts.groups import GroupCollection, collect_groups
from reinforge.rollouts.service import RolloutService
from reinforge.rollouts.turns import RolloutResult, run_rollouts

Rollouts = RolloutResult

__all__ = [
    "Evaluation",
    "GroupCollection",
    "RolloutResult",
    "RolloutService",
    "Rollouts",
    "collect_groups",
    "evaluate",
    "run_rollouts",
]
