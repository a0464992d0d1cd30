"""Group collection: roll out G samples per prompt, keep the groups a predicate accepts, top up from a prompt stream.

This is dynamic sampling's loop (DAPO): groups whose rewards are all equal carry no learning signal,
so they are dropped and more prompts are rolled out until `wanted` rows are kept or the round limit
is reached. It lives with the rollouts, not the algorithm, because it is about which prompts are
drawn and generated, and the asynchronous producer must run the same loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

import attrs
import torch

from reinforge.core.batch import Batch
from reinforge.core.sampling import SamplingParams
from reinforge.rollouts.turns import RolloutResult


class Collector(Protocol):
    """What group collection generates through (`RolloutService.collect`)."""

    def collect(self, prompts: list[dict[str, Any]], sampling: SamplingParams, *, max_turns: int = 1) -> RolloutResult: ...


@attrs.frozen
class GroupCollection:
    """The kept groups (each prompt's samples adjacent) and how many rounds of generation it took."""

    result: RolloutResult
    rounds: int


def collect_groups(
    rollouts: Collector,
    prompt_stream: Iterator[list[dict[str, Any]]],
    group_size: int,
    wanted: int,
    *,
    sampling: Callable[[int], SamplingParams],
    keep: Callable[[RolloutResult], torch.Tensor] | None = None,
    max_rounds: int = 1,
    max_turns: int = 1,
) -> GroupCollection:
    """Roll out `group_size` samples of each prompt batch drawn from `prompt_stream` until `wanted` rows are kept.

    `sampling(round)` gives each round's sampling (its own seed, so a resumed run samples the same).
    `keep(result) -> [N] bool` marks the rows to keep (whole groups: all of a group's rows alike); without it one round is returned
    as it is. With it, rounds continue until `wanted` rows are kept or `max_rounds` rounds ran,
    and the kept rows are cut to at most `wanted` (whole groups). Each batch drawn from the
    stream is consumed: a prompt is never drawn twice.
    """
    if keep is None:
        prompts = next(prompt_stream)
        return GroupCollection(result=rollouts.collect(_repeat(prompts, group_size), sampling(0), max_turns=max_turns), rounds=1)
    kept: list[RolloutResult] = []
    rounds = 0
    while True:
        prompts = next(prompt_stream)
        result = rollouts.collect(_repeat(prompts, group_size), sampling(rounds), max_turns=max_turns)
        rows = keep(result).nonzero().squeeze(1).tolist()  # a [N] bool mask that keeps or drops whole groups
        kept.append(select_rows(result, rows))
        rounds += 1
        have = sum(len(r.rewards) for r in kept)
        if have >= wanted or rounds >= max_rounds:
            break
    merged = concat_results(kept)
    usable = min(len(merged.rewards), wanted)
    usable -= usable % group_size  # whole groups
    return GroupCollection(result=select_rows(merged, list(range(usable))), rounds=rounds)


def _repeat(prompts: list[dict[str, Any]], group_size: int) -> list[dict[str, Any]]:
    return [p for p in prompts for _ in range(group_size)]


def select_rows(result: RolloutResult, rows: list[int]) -> RolloutResult:
    """The rollouts `rows` of `result`, in that order."""
    return attrs.evolve(
        result,
        batch=result.batch.select(rows),
        rewards=result.rewards[rows],
        responses=[result.responses[i] for i in rows],
        turns=[result.turns[i] for i in rows],
        info=[result.info[i] for i in rows],
        correct=result.correct[rows],
        last_rewards=result.last_rewards[rows],
        max_turns_reached=result.max_turns_reached[rows],
        reward_components=[result.reward_components[i] for i in rows] if result.reward_components else [],
        prompt_messages=[result.prompt_messages[i] for i in rows] if result.prompt_messages else [],
    )


def concat_results(results: list[RolloutResult]) -> RolloutResult:
    """One result of several, rows in order (the environment metrics are the first one's)."""
    return RolloutResult(
        batch=Batch.concat([r.batch for r in results]),
        rewards=torch.cat([r.rewards for r in results]),
        responses=[s for r in results for s in r.responses],
        env_metrics=results[0].env_metrics,
        turns=[t for r in results for t in r.turns],
        info=[x for r in results for x in r.info],
        correct=torch.cat([r.correct for r in results]),
        last_rewards=torch.cat([r.last_rewards for r in results]),
        max_turns_reached=torch.cat([r.max_turns_reached for r in results]),
        reward_components=[x for r in results for x in (r.reward_components or [{} for _ in r.rewards])],
        prompt_messages=[x for r in results for x in (r.prompt_messages or [0 for _ in r.rewards])],
    )
