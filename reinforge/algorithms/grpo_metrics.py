"""What GRPO reports about a step: rollout metrics, sample records, and the mean of per-optimizer-step metrics.

Kept apart from `grpo.py` so the algorithm reads as the step itself: rewards -> advantages ->
logprobs -> loss -> optimizer steps.
"""

from __future__ import annotations

from typing import Any

import torch

from reinforge.core.batch import Batch
from reinforge.rollouts.turns import RolloutResult


def rollout_metrics(
    rollouts: RolloutResult, rewards: torch.Tensor, batch: Batch, advantages: torch.Tensor, prefix: str
) -> dict[str, float]:
    """Rewards, accuracy, lengths and advantages of the step's rollouts (`prefix` + name), and the environment's."""
    lengths = batch["token_mask"].sum(dim=1)
    metrics = {
        "reward_mean": float(rewards.mean()),
        "reward_std": float(rewards.std(unbiased=False)),
        "accuracy": float(rollouts.correct.float().mean()),  # the environment's verdict, not the shaped reward
        "response_length_mean": float(lengths.mean()),
        "response_length_max": float(lengths.max()),
        "truncation_rate": float(batch["truncated"].float().mean()),
        "advantages_mean": float(advantages.mean()),
        "advantages_std": float(advantages.std(unbiased=False)),
        "advantages_min": float(advantages.min()),
        "advantages_max": float(advantages.max()),
        # one exploding sample shows here on its first step, whatever its sign
        "advantages_max_abs": float(advantages.abs().max()),
        "mean_prompt_length": float(batch["prompt_lengths"].float().mean()),
        "num_rollouts": float(len(rewards)),
        "turns_mean": sum(rollouts.turns) / max(len(rollouts.turns), 1),
        "turns_max": float(max(rollouts.turns, default=0)),
        # episodes that used every turn (grpo.max_rollout_turns) without the environment saying done
        "max_turns_reached_rate": float(rollouts.max_turns_reached.float().mean()),
    }
    # the environment's named reward parts (EnvironmentStep.reward_components), summed over turns, 0 where absent
    names = sorted({name for parts in rollouts.reward_components for name in parts})
    for name in names:
        metrics[f"reward/{name}_mean"] = sum(parts.get(name, 0.0) for parts in rollouts.reward_components) / len(rewards)
    out = {f"{prefix}{k}": v for k, v in metrics.items()}
    out.update({f"env/{k}": v for k, v in rollouts.env_metrics.items()})
    return out


def sample_records(rollouts: RolloutResult, rewards: torch.Tensor, advantages: torch.Tensor, count: int) -> list[dict[str, Any]]:
    """The first `count` rollouts as sample-log records: the prompt (its last user message), the whole
    conversation after it (every turn, observations included), and how it was scored."""
    count = min(count, len(rollouts.responses))
    return [
        {
            "prompt": _prompt_text(rollouts, i),
            "conversation": rollouts.batch["messages"][i][_prompt_messages(rollouts, i) :],
            "turns": rollouts.turns[i],
            "response": rollouts.responses[i],
            "answer": rollouts.batch["metadata"][i].get("answer"),
            "reward": float(rewards[i]),
            "advantage": float(advantages[i]),
            "truncated": bool(rollouts.batch["truncated"][i]),
        }
        for i in range(count)
    ]


def _prompt_messages(rollouts: RolloutResult, i: int) -> int:
    """How many of row i's messages came with the prompt (system, worked examples, the question)."""
    if rollouts.prompt_messages:
        return rollouts.prompt_messages[i]
    messages = rollouts.batch["messages"][i]
    return max(len(messages) - 1, 0)  # a result built without the count: a single-turn reply ends it


def _prompt_text(rollouts: RolloutResult, i: int) -> str:
    prompt = rollouts.batch["messages"][i][: _prompt_messages(rollouts, i)]
    return next((str(m["content"]) for m in reversed(prompt) if m.get("role") == "user"), "")


def mean_metrics(per_step: list[dict[str, float]], prefix: str) -> dict[str, float]:
    """One value per key over the optimizer steps of a GRPO step: max of *_max, min of *_min, sum of tokens, else the mean."""
    keys = {k for m in per_step for k in m}
    out = {}
    for key in keys:
        values = [m[key] for m in per_step if key in m]
        if key.endswith("_max"):
            out[prefix + key] = max(values)
        elif key.endswith("_min"):
            out[prefix + key] = min(values)
        elif key == "tokens":
            out[prefix + key] = sum(values)
        else:
            out[prefix + key] = sum(values) / len(values)
    out[prefix + "optimizer_steps"] = float(len(per_step))
    return out

