"""`RayEnvironment`: the `Environment` seam over `cluster.environment_workers` actors.

A batch of conversations is cut into contiguous chunks, one per actor, so scoring runs in
parallel (math verification, tool calls, game engines). An actor that crashes is restarted by
Ray (`cluster.environment_max_restarts`) and its chunk is sent again once; a second failure
fails the step with an error naming the environment and the worker.

Merging the chunks: the per-conversation lists (rewards, observations, `correct`, next stop strings,
reward components) are joined in row order. Merging the chunks' metrics: the seam says metrics are aggregated over the batch (means or
counts). Means are merged weighted by chunk size; names the environment lists in a
`summed_metrics` class attribute are counts and are summed; `*_min` / `*_max` take the min / max.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

from reinforge.core.interfaces import EnvironmentStep
from reinforge.executors.ray.worker_group import WorkerGroup, split_bounds


class RayEnvironment:
    """Implements `Environment` by dispatching chunks to a `WorkerGroup` of `EnvironmentWorker` actors."""

    def __init__(self, group: WorkerGroup, *, name: str, summed_metrics: Collection[str] = ()) -> None:
        self.group = group
        self.name = name
        self.summed_metrics = frozenset(summed_metrics)

    def set_summed_metrics(self, per_worker: list[Collection[str]]) -> None:
        self.summed_metrics = frozenset(per_worker[0]) if per_worker else frozenset()

    def step(self, conversations: list[list[dict[str, str]]], metadata: list[dict[str, Any]]) -> EnvironmentStep:
        if len(conversations) != len(metadata):
            raise ValueError(f"{len(conversations)} conversations but {len(metadata)} metadata entries")
        self.group.check_usable()
        bounds = split_bounds(len(conversations), len(self.group))

        def submit(i: int) -> Any:
            start, stop = bounds[i]
            return self.group.actors[i].step.remote(conversations[start:stop], metadata[start:stop])

        refs = [submit(i) for i in range(len(bounds))]
        steps = self.group.gather(refs, list(range(len(refs))), what=f"step of environment '{self.name}'", retry=submit)
        return merge_steps(steps, [b - a for a, b in bounds], self.summed_metrics)

    def shutdown(self) -> None:
        self.group.shutdown()


def merge_steps(steps: Sequence[EnvironmentStep], sizes: Sequence[int], summed: Collection[str] = ()) -> EnvironmentStep:
    """One `EnvironmentStep` for the whole batch from per-chunk steps (chunks in row order)."""
    if len(steps) == 1:
        return steps[0]
    total = sum(sizes)
    keys = [k for k in steps[0].metrics] + [k for s in steps[1:] for k in s.metrics if k not in steps[0].metrics]
    metrics: dict[str, float] = {}
    for key in keys:
        parts = [(s.metrics[key], n) for s, n in zip(steps, sizes) if key in s.metrics]
        values = [v for v, _ in parts]
        if key in summed:
            metrics[key] = float(sum(values))
        elif key.endswith("_min"):
            metrics[key] = float(min(values))
        elif key.endswith("_max"):
            metrics[key] = float(max(values))
        else:
            weight = sum(n for _, n in parts) or total
            metrics[key] = float(sum(v * n for v, n in parts) / weight) if weight else 0.0
    return EnvironmentStep(
        rewards=[r for s in steps for r in s.rewards],
        observations=[o for s in steps for o in s.observations],
        done=[d for s in steps for d in s.done],
        metrics=metrics,
        info=[x for s in steps for x in s.info],
        # The environment's verdict, per row; a chunk that gave none counts a reward >= 1 as right, as one
        # worker would have been judged (the rollout's own fallback).
        correct=_per_row(steps, "correct", lambda s: [float(r) >= 1.0 for r in s.rewards]),
        next_stop_strings=_per_row(steps, "next_stop_strings", lambda s: [None] * len(s.rewards)),
        reward_components=_per_row(steps, "reward_components", lambda s: [{} for _ in s.rewards]),
    )


def _per_row(steps: Sequence[EnvironmentStep], field: str, default: Callable[[EnvironmentStep], list[Any]]) -> list[Any] | None:
    """The chunks' `field` lists joined in row order; None when no chunk gave one."""
    if all(getattr(s, field) is None for s in steps):
        return None
    return [x for s in steps for x in (getattr(s, field) if getattr(s, field) is not None else default(s))]
