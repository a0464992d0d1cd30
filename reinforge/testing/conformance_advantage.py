"""Conformance tests that any advantage estimator plugin runs against itself.

Why: GRPO calls an estimator once per step as `estimator(rewards [N], group, *, config) -> [N]`
(`reinforge.core.constructors.AdvantageEstimator`) and trusts it to answer one finite advantage per
rollout, in the rewards' dtype, as a pure function of its inputs that treats each prompt's group
alike wherever it sits in the batch. A plugin proves it by subclassing one class:

    from reinforge.testing.conformance_advantage import AdvantageEstimatorConformance

    class TestMyEstimator(AdvantageEstimatorConformance):
        estimator_class = MyEstimator          # built as MyEstimator(options), or MyEstimator() without
        estimator_options = None

`reinforge plugins check NAME` runs this suite against an installed estimator.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import torch

GROUP = 4
REWARDS = (0.0, 1.0, 1.0, 0.0, 0.5, 0.2, 0.9, 0.1, 3.0, -1.0, 2.0, 0.0)  # three groups of 4, varied scales


class AdvantageEstimatorConformance:
    """Mix into a `Test...` class; set `estimator_class` (and `estimator_options`) or override `make_estimator`."""

    estimator_class: ClassVar[Any] = None
    estimator_options: ClassVar[Any] = None

    def make_estimator(self) -> Any:
        if self.estimator_class is None:
            raise NotImplementedError("set estimator_class on the test class, or override make_estimator()")
        return self.estimator_class() if self.estimator_options is None else self.estimator_class(self.estimator_options)

    @pytest.fixture
    def estimate(self) -> Any:
        from reinforge.algorithms.grpo_config import GRPOConfig

        estimator, config = self.make_estimator(), GRPOConfig(num_generations_per_prompt=GROUP)
        return lambda rewards, group=GROUP: estimator(rewards, group, config=config)

    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    def test_one_finite_advantage_per_rollout_in_the_rewards_dtype(self, estimate: Any, dtype: torch.dtype) -> None:
        rewards = torch.tensor(REWARDS, dtype=dtype)
        advantages = estimate(rewards)
        assert isinstance(advantages, torch.Tensor) and advantages.shape == rewards.shape, "one advantage per rollout"
        assert advantages.dtype == dtype, f"advantages are {advantages.dtype}, the rewards {dtype}"
        assert torch.isfinite(advantages).all()

    def test_a_pure_function_of_its_inputs(self, estimate: Any) -> None:
        rewards = torch.tensor(REWARDS)
        first = estimate(rewards)
        assert torch.equal(rewards, torch.tensor(REWARDS)), "the estimator changed the rewards it was given"
        assert torch.equal(first, estimate(rewards.clone())), "two calls on the same rewards must give the same advantages"

    def test_moving_a_group_moves_its_advantages(self, estimate: Any) -> None:
        rewards = torch.tensor(REWARDS)
        order = [2, 0, 1]  # groups in another order
        moved = torch.cat([rewards.view(-1, GROUP)[g] for g in order])
        expected = torch.cat([estimate(rewards).view(-1, GROUP)[g] for g in order])
        torch.testing.assert_close(estimate(moved), expected)

    def test_groups_whose_rewards_are_all_equal_give_finite_advantages(self, estimate: Any) -> None:
        assert torch.isfinite(estimate(torch.ones(8))).all() and torch.isfinite(estimate(torch.zeros(8))).all()

    def test_a_group_of_one(self, estimate: Any) -> None:
        advantages = estimate(torch.tensor([0.5, 2.0, -1.0]), group=1)
        assert advantages.shape == (3,) and torch.isfinite(advantages).all()
