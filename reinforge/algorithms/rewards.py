"""Reward post-processing applied before advantages: length shaping (DAPO overlong or "stop properly") and a linear rescale.

Both run on the flat per-sample rewards `# [N]`, after the environments have scored and before
the group baselines, so the advantages see the shaped values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import torch
from attrs import validators as v

from reinforge.core.config import doc


def overlong_reward_shaping(
    rewards: torch.Tensor | Sequence[float],  # [N]
    lengths: torch.Tensor | Sequence[int],  # [N] response (generated) lengths in tokens
    max_response_length: int,
    overlong_buffer_length: int,
    overlong_penalty: float,
) -> torch.Tensor:  # [N]
    """DAPO soft overlong punishment: a penalty that grows linearly over the last `overlong_buffer_length` tokens.

    expected = max_response_length - overlong_buffer_length;
    r += min(-(len - expected) / overlong_buffer_length * overlong_penalty, 0).
    A response at the maximum loses exactly `overlong_penalty`; the ramp is not capped beyond
    it (a longer response, e.g. counted with its stop token, loses proportionally more).
    """
    _check_shaping(max_response_length, overlong_buffer_length, overlong_penalty)
    r = torch.as_tensor(rewards)
    r = r if r.is_floating_point() else r.to(torch.float32)
    length = torch.as_tensor(lengths, device=r.device).to(r.dtype)
    if length.shape != r.shape:
        raise ValueError(f"rewards {tuple(r.shape)} and lengths {tuple(length.shape)} must have the same shape")
    expected = max_response_length - overlong_buffer_length
    penalty = -(length - expected) / overlong_buffer_length * overlong_penalty
    return r + penalty.clamp(max=0.0)


def stop_properly_penalty(
    rewards: torch.Tensor | Sequence[float],  # [N]
    truncated: torch.Tensor | Sequence[bool],  # [N] response hit the length limit without stopping
    coef: float,
) -> torch.Tensor:  # [N]
    """NeMo-RL's "stop properly" penalty: the reward of a truncated response is multiplied by `coef` in [0, 1].

    0 takes all credit from an answer that never stopped; 1 leaves rewards unchanged.
    """
    if not 0 <= coef <= 1:
        raise ValueError(f"stop_properly_penalty_coef must be in [0, 1], got {coef}")
    r = torch.as_tensor(rewards)
    r = r if r.is_floating_point() else r.to(torch.float32)
    cut = torch.as_tensor(truncated, device=r.device).to(torch.bool)
    if cut.shape != r.shape:
        raise ValueError(f"rewards {tuple(r.shape)} and truncated {tuple(cut.shape)} must have the same shape")
    return torch.where(cut, r * coef, r)


def scale_rewards(
    rewards: torch.Tensor | Sequence[float],  # [N]
    source_min: float,
    source_max: float,
    target_min: float,
    target_max: float,
) -> torch.Tensor:  # [N]
    """Clamp rewards to [source_min, source_max], then map that range linearly onto [target_min, target_max].

    E.g. {0, 1} -> {-1, 1} makes a wrong answer a penalty; clamping first keeps an out-of-range
    reward from a buggy verifier from dominating a group.
    """
    if source_max <= source_min:
        raise ValueError(f"source_max ({source_max}) must exceed source_min ({source_min})")
    r = torch.as_tensor(rewards)
    r = r if r.is_floating_point() else r.to(torch.float32)
    unit = (r.clamp(source_min, source_max) - source_min) / (source_max - source_min)
    return target_min + unit * (target_max - target_min)


def _check_shaping(max_response_length: int, overlong_buffer_length: int, overlong_penalty: float) -> None:
    if overlong_buffer_length <= 0:
        raise ValueError(f"overlong_buffer_length must be > 0, got {overlong_buffer_length}")
    if max_response_length <= overlong_buffer_length:
        raise ValueError(
            f"max_response_length ({max_response_length}) must exceed overlong_buffer_length ({overlong_buffer_length})"
        )
    if overlong_penalty < 0:
        raise ValueError(f"the overlong penalty must be >= 0, got {overlong_penalty}")


@attrs.define(kw_only=True, frozen=True)
class RewardShapingConfig:
    """Length-based reward shaping (`grpo.reward_shaping` in NeMo-RL): DAPO overlong, or the "stop properly" penalty."""

    enabled: bool = doc("apply the shaping", default=False)
    overlong_buffer_length: int = doc(
        "tokens before max_response_length over which the penalty ramps from 0 to overlong_buffer_penalty",
        default=128,
        validator=v.gt(0),
    )
    overlong_buffer_penalty: float = doc("penalty reached at max_response_length", default=1.0, validator=v.ge(0))
    max_response_length: int | None = doc(
        "maximum response length (usually generation's max_new_tokens); required when enabled",
        default=None,
        validator=v.optional(v.gt(0)),
    )
    stop_properly_penalty_coef: float | None = doc(
        "instead of the DAPO ramp: multiply the reward of a truncated response (no stop before the limit) by "
        "this, in [0, 1] (0 = no credit, 1 = no penalty); null = use the DAPO overlong shaping",
        default=None,
        validator=v.optional([v.ge(0), v.le(1)]),
    )

    def __attrs_post_init__(self) -> None:
        if not self.enabled:
            return
        if self.stop_properly_penalty_coef is not None:
            if self.max_response_length is not None:
                # NeMo-RL silently ignores the DAPO settings then; refuse rather than ignore
                raise ValueError(
                    "stop_properly_penalty_coef replaces the DAPO overlong shaping, so max_response_length would be "
                    "ignored; set one of them"
                )
            return
        if self.max_response_length is None:
            raise ValueError(
                "max_response_length is required when reward shaping is enabled "
                "(or set stop_properly_penalty_coef for the truncation penalty)"
            )
        _check_shaping(self.max_response_length, self.overlong_buffer_length, self.overlong_buffer_penalty)

    def apply(
        self,
        rewards: torch.Tensor,  # [N]
        lengths: torch.Tensor,  # [N] response lengths in tokens
        truncated: torch.Tensor | None = None,  # [N] bool, needed by the stop-properly penalty
    ) -> torch.Tensor:  # [N]
        """Shaped rewards, or the rewards unchanged when disabled."""
        if not self.enabled:
            return torch.as_tensor(rewards)
        if self.stop_properly_penalty_coef is not None:
            if truncated is None:
                raise ValueError("the stop-properly penalty needs each response's truncated flag")
            return stop_properly_penalty(rewards, truncated, self.stop_properly_penalty_coef)
        assert self.max_response_length is not None  # checked at construction
        return overlong_reward_shaping(
            rewards, lengths, self.max_response_length, self.overlong_buffer_length, self.overlong_buffer_penalty
        )


def _ordered_range(instance: Any, low: str, high: str) -> None:
    if getattr(instance, high) <= getattr(instance, low):
        raise ValueError(f"{high} ({getattr(instance, high)}) must exceed {low} ({getattr(instance, low)})")


@attrs.define(kw_only=True, frozen=True)
class RewardScalingConfig:
    """Clamp-and-map reward scaling (`grpo.reward_scaling` in NeMo-RL)."""

    enabled: bool = doc("apply the scaling", default=False)
    source_min: float = doc("low end of the environment's reward range; lower rewards are clamped to it", default=0.0)
    source_max: float = doc("high end of the environment's reward range; higher rewards are clamped to it", default=1.0)
    target_min: float = doc("what source_min maps to", default=0.0)
    target_max: float = doc("what source_max maps to", default=1.0)

    def __attrs_post_init__(self) -> None:
        _ordered_range(self, "source_min", "source_max")
        _ordered_range(self, "target_min", "target_max")

    def apply(self, rewards: torch.Tensor) -> torch.Tensor:  # [N]
        """Scaled rewards, or the rewards unchanged when disabled."""
        if not self.enabled:
            return torch.as_tensor(rewards)
        return scale_rewards(rewards, self.source_min, self.source_max, self.target_min, self.target_max)
