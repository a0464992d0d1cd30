"""`MovingBaselineGRPO`: GRPO's rollouts, loss and schedule, with REINFORCE's moving-average baseline.

The advantage of a rollout is its reward minus a baseline that remembers earlier steps: an exponential
moving average of the mean reward (Williams' reinforcement comparison), instead of the mean of the
prompt's own group. Because the baseline is state carried from step to step, this is an algorithm
rather than an advantage estimator (an estimator is a pure function of one step's rewards), and the
state goes into every checkpoint through `state_dict`.
"""

from __future__ import annotations

from typing import Any

import reinforge as rf


class MovingBaselineGRPO(rf.GRPO):
    decay = 0.9  # weight of the past in the baseline

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.baseline: float | None = None  # None until the first step has been seen

    def advantages(self, rewards: Any, group: int) -> Any:
        """`rewards  # [N]` -> `rewards - baseline  # [N]`; then the baseline moves toward this step's mean."""
        mean = float(rewards.mean())
        baseline = mean if self.baseline is None else self.baseline
        self.baseline = self.decay * baseline + (1 - self.decay) * mean
        return rewards - baseline

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "baseline": self.baseline}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.baseline = state["baseline"]
