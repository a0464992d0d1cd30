"""Built-in advantage estimators (`grpo.advantage_estimator`); the classes live in reinforge.algorithms."""

from __future__ import annotations

from reinforge.core.hookspecs import hookimpl
from reinforge.core.registry import Register

_ESTIMATORS = "reinforge.algorithms.advantage_estimators"


@hookimpl
def reinforge_register_advantage_estimators(register: Register) -> None:
    register(
        "grpo",
        f"{_ESTIMATORS}:GRPOEstimator",
        description="r - leave-one-out (or group) mean, over the group's std (grpo.use_leave_one_out_baseline, "
        "grpo.normalize_rewards)",
    )
    register(
        "rloo",
        f"{_ESTIMATORS}:RLOOEstimator",
        description="RLOO: r - mean of the other G-1 rewards of the prompt, not normalised",
    )
    register(
        "dr_grpo",
        f"{_ESTIMATORS}:DrGRPOEstimator",
        description="Dr. GRPO: r - group mean, not normalised (pair with loss_fn.loss_reduction: seq_sum_constant)",
    )
    register(
        "reinforce_pp",
        f"{_ESTIMATORS}:ReinforcePPEstimator",
        config=f"{_ESTIMATORS}:ReinforcePPConfig",
        description="REINFORCE++(-baseline): r - group mean, whitened over the whole batch",
    )
