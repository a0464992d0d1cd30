"""The built-in advantage estimators, chosen by name with `grpo.advantage_estimator`.

Each turns the rewards of G rollouts per prompt into one advantage per rollout, without a critic,
by judging a rollout against the others of its prompt (`reinforge.core.constructors.AdvantageEstimator`
says why this is a seam). They are registered in `reinforge.plugins.advantage_estimators`; a plugin
adds its own the same way.

    name          baseline b_i                            scale
    grpo          leave-one-out or group mean (config)    / (s_i + 1e-6) when grpo.normalize_rewards
    rloo          mean of the other G - 1 rewards         none
    dr_grpo       group mean                              none
    reinforce_pp  group mean (or none, by option)         whitened over the whole batch

Every estimator computes in float64 and returns the rewards' dtype; GRPO then clamps the result to
`grpo.advantage_clip_low/high`, whichever estimator made it. A group of one rollout has nothing to
compare with: its advantage is 0 under every estimator (reinforce_pp without a group baseline aside).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs
import torch

from reinforge.algorithms.advantages import baseline_and_std_per_group, grpo_advantages
from reinforge.core.config import doc, structure
from reinforge.core.errors import PluginError, ReinforgeError
from reinforge.core.registry import Registry

if TYPE_CHECKING:
    from reinforge.algorithms.grpo_config import GRPOConfig
    from reinforge.core.constructors import AdvantageEstimator


def _float64(rewards: torch.Tensor) -> tuple[torch.Tensor, torch.dtype]:  # [N] float64, the dtype to return
    r = torch.as_tensor(rewards)
    if r.dim() != 1:
        raise ValueError(f"rewards must be 1-D [N], got shape {tuple(r.shape)}")
    return r.to(torch.float64), (r.dtype if r.is_floating_point() else torch.float32)


class GRPOEstimator:
    """`grpo`: A_i = r_i - b_i, divided by (s_i + 1e-6) where s_i > 0, with b_i and s_i as GRPO's switches say.

    `grpo.use_leave_one_out_baseline` (b_i, s_i over the other G - 1 rewards, else over the whole
    group, Bessel std) and `grpo.normalize_rewards`; see `reinforge.algorithms.advantages.grpo_advantages`.
    """

    def __init__(self, options: None = None) -> None:
        del options  # takes none

    def __call__(self, rewards: torch.Tensor, group: int, *, config: GRPOConfig | None = None) -> torch.Tensor:
        leave_one_out = config.use_leave_one_out_baseline if config is not None else True
        normalize = config.normalize_rewards if config is not None else True
        return grpo_advantages(rewards, group, leave_one_out=leave_one_out, normalize=normalize)  # [N]


class RLOOEstimator:
    """`rloo` (REINFORCE leave-one-out, Ahmadian et al. 2024): A_i = r_i - mean of the other G - 1 rewards.

    No normalisation: the advantage keeps the reward's scale. GRPO's `normalize_rewards` and
    `use_leave_one_out_baseline` do not apply.
    """

    def __init__(self, options: None = None) -> None:
        del options

    def __call__(self, rewards: torch.Tensor, group: int, *, config: Any = None) -> torch.Tensor:
        return grpo_advantages(rewards, group, leave_one_out=True, normalize=False)  # [N]


class DrGRPOEstimator:
    """`dr_grpo` (Dr. GRPO, Liu et al. 2025, "Understanding R1-Zero-Like Training"): A_i = r_i - mean of the group.

    No division by the group's std, which weights questions that are nearly always (or never)
    solved far above the rest. Dr. GRPO pairs it with a loss that sums each sequence's tokens and
    divides by a constant instead of the sequence's length: `loss_fn.loss_reduction: seq_sum_constant`
    with `loss_fn.loss_reduction_constant` = the generation budget (policy.generation.max_new_tokens).
    """

    def __init__(self, options: None = None) -> None:
        del options

    def __call__(self, rewards: torch.Tensor, group: int, *, config: Any = None) -> torch.Tensor:
        return grpo_advantages(rewards, group, leave_one_out=False, normalize=False)  # [N]


@attrs.define(kw_only=True, frozen=True)
class ReinforcePPConfig:
    """Options of `reinforce_pp` (`grpo.advantage_estimator_cfg`)."""

    minus_baseline: bool = doc(
        "subtract the mean reward of the rollout's group before whitening (REINFORCE++-baseline, for "
        "G > 1 samples per prompt); false = plain REINFORCE++, whitening the raw rewards over the batch "
        "(NeMo-RL: grpo.adv_estimator.minus_baseline)",
        default=True,
    )


class ReinforcePPEstimator:
    """`reinforce_pp` (REINFORCE++, Hu 2025): A = whiten(r - group mean) over the whole batch.

    c_i = r_i - mean of its group (or c_i = r_i without `minus_baseline`); A_i = (c_i - mean(c)) /
    (std(c) + 1e-6) with the batch's mean and population std. Normalising by the batch's spread
    rather than each group's keeps a group with little spread from getting huge advantages; a batch
    whose rewards are all equal gets 0. The statistics are over rollouts (each counts once), where
    NeMo-RL's `reinforce_plus_plus` weights each rollout by its token count and divides by
    sqrt(max(var, 1e-8)).
    """

    epsilon = 1e-6  # keeps an all-equal batch at 0 instead of 0 / 0

    def __init__(self, options: ReinforcePPConfig | None = None) -> None:
        self.options = options or ReinforcePPConfig()

    def __call__(self, rewards: torch.Tensor, group: int, *, config: Any = None) -> torch.Tensor:
        r, dtype = _float64(rewards)  # [N]
        if r.numel() == 0:
            return r.to(dtype)
        if self.options.minus_baseline:
            centred = r - baseline_and_std_per_group(r, group, leave_one_out=False)[0]  # [N]
        else:
            centred = r - r[0]  # whitening ignores a shift; this one keeps equal rewards exactly equal
        centred = centred - centred.mean()
        std = centred.square().mean().sqrt()  # population std over the batch
        return (centred / (std + self.epsilon)).to(dtype)  # [N]


# ---------------------------------------------------------------------------- used by GRPO
def make_advantage_estimator(config: GRPOConfig, registry: Registry | None = None) -> AdvantageEstimator:
    """The estimator `config.advantage_estimator` names, built from `config.advantage_estimator_cfg`.

    `registry` is the run's (project and installed plugins included); without one (GRPO used from
    Python outside a Trainer) the default registry is built, which takes milliseconds. Options given
    as a plain mapping from Python are structured like YAML ones. An unknown name is a PluginError
    naming the key, the closest name and every known one.
    """
    registry = registry or Registry.create()
    name, options = config.advantage_estimator, config.advantage_estimator_cfg
    try:
        estimator_cls = registry.advantage_estimator(name)
        if isinstance(options, Mapping):
            options_cls = registry.config_class("advantage_estimator", name)
            if options_cls is None and options:
                raise PluginError(f"the advantage estimator '{name}' takes no options, got {dict(options)}")
            source = "grpo.advantage_estimator_cfg"
            options = structure(options, options_cls, source=source) if options_cls is not None else None
    except PluginError as exc:
        raise PluginError(f"grpo.advantage_estimator: {exc}") from None
    return estimator_cls(options) if options is not None else estimator_cls()


def estimate_advantages(
    estimator: AdvantageEstimator, rewards: torch.Tensor, group: int, config: GRPOConfig
) -> torch.Tensor:  # [N]
    """Call `estimator` on `rewards  # [N]`, check it answered one advantage per rollout, apply GRPO's clamp."""
    advantages = estimator(rewards, group, config=config)
    if not isinstance(advantages, torch.Tensor) or advantages.shape != rewards.shape:
        got = tuple(advantages.shape) if isinstance(advantages, torch.Tensor) else type(advantages).__name__
        raise ReinforgeError(
            f"the advantage estimator '{config.advantage_estimator}' returned {got} for rewards of shape "
            f"{tuple(rewards.shape)}; an estimator returns one advantage per rollout, a tensor of the rewards' shape"
        )
    if config.advantage_clip_low is not None or config.advantage_clip_high is not None:
        advantages = advantages.clamp(min=config.advantage_clip_low, max=config.advantage_clip_high)
    return advantages
