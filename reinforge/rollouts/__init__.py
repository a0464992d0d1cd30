"""The rollout service: generate -> environment turns -> scored rollouts; refit-when-stale, wake/sleep."""

from __future__ import annotations

from reinforge.rollouts.service import RolloutService
from reinforge.rollouts.turns import RolloutResult, run_rollouts

Rollouts = RolloutResult

__all__ = ["RolloutResult", "RolloutService", "Rollouts", "run_rollouts"]
