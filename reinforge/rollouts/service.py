"""`RolloutService`: everything between "here are prompts" and "here are scored rollouts".

It owns the generator's side of a run — wake it, generate, let the environment judge (turn by
turn for multi-turn environments), put it back to sleep — and keeps the generator's weights in
step with the trained policy (`sync`: refit only when stale, in buckets). GRPO, validation and
`reinforge eval` all collect through it, so none of them touches wake/sleep or refit.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from reinforge.core.interfaces import Environment, GenerationBackend, TrainingBackend
from reinforge.core.run import StepGroups, StepWork
from reinforge.core.sampling import SamplingParams
from reinforge.core.timer import Timer
from reinforge.rollouts.bridge import TurnBridge
from reinforge.rollouts.turns import RolloutResult, run_rollouts


class RolloutService:
    """Collects rollouts with one generator and one environment; refits the generator when stale."""

    def __init__(
        self,
        generation: GenerationBackend,
        environment: Environment,
        tokenizer: Any,
        *,
        max_total_length: int,
        timer: Timer | None = None,
        sleep_between: bool = True,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        self.generation = generation
        self.environment = environment
        self.tokenizer = tokenizer
        self.max_total_length = max_total_length
        self.timer = timer or Timer()
        # Training shares devices with the generator, so it sleeps between collections; evaluation keeps it awake.
        self.sleep_between = sleep_between
        # The policy version whose weights the generator holds; a fresh generator holds the initial weights (0).
        self.generator_version = 0
        # What goes between turns, rendered with the run's tool schemas (data.tools) like the prompts.
        self.bridge = TurnBridge(tokenizer, tools=tools)

    def collect(self, prompts: list[dict[str, Any]], sampling: SamplingParams, *, max_turns: int = 1) -> RolloutResult:
        """Roll out every prompt once (repeat prompts beforehand for several samples per prompt).

        Generation and environment time go to the timer's "generation" and "reward" phases.
        """
        return self._roll_out(prompts, sampling, max_turns=max_turns, timer=self.timer)

    def _roll_out(self, prompts: list[dict[str, Any]], sampling: SamplingParams, *, max_turns: int, timer: Timer) -> RolloutResult:
        if self.sleep_between:
            self.generation.wake()
        try:
            return run_rollouts(
                prompts,
                generation=self.generation,
                environment=self.environment,
                tokenizer=self.tokenizer,
                sampling=sampling,
                max_total_length=self.max_total_length,
                max_turns=max_turns,
                timer=timer,
                bridge=self.bridge,
            )
        finally:
            if self.sleep_between:
                self.generation.sleep()

    def check_turns(self) -> None:
        """Fail now, not mid-run, if the chat template cannot bridge the roles the environment's observations
        take (`observation_roles`, an optional attribute of an environment; undeclared roles are checked on first use)."""
        for role in getattr(self.environment, "observation_roles", ()):
            self.bridge.check(role)

    def sync(self, policy: TrainingBackend, version: int, *, bucket_bytes: int) -> dict[str, float]:
        """Push `policy`'s weights into the generator unless it already holds `version`; returns refit metrics."""
        if self.generator_version == version:
            return {}
        moved = 0
        start = time.perf_counter()
        with self.timer.phase("refit"):
            self.generation.wake()
            for bucket in policy.named_weights(bucket_bytes):
                moved += sum(t.numel() * t.element_size() for _, t in bucket)
                self.generation.update_weights(bucket)
        self.generator_version = version
        seconds = time.perf_counter() - start
        return {"refit/bytes": float(moved), "refit/seconds": seconds, "refit/gb_per_s": moved / 1e9 / max(seconds, 1e-9)}

    def mark_stale(self) -> None:
        """The generator no longer holds any known version (e.g. it was rebuilt from the base model on resume)."""
        self.generator_version = -1

    # ------------------------------------------------------------------ ahead-of-time work (see core.run.Rollouts)
    def submit(self, work: StepWork) -> None:
        """Nothing runs ahead here: `take` generates."""

    def take(self, work: StepWork) -> StepGroups:
        """Generate `work`'s groups now, with the weights the generator holds."""
        prompts = [p for p in work.prompts for _ in range(work.group_size)]
        result = self.collect(prompts, work.sampling, max_turns=work.max_turns)
        return StepGroups(step=work.step, result=result, version=self.generator_version)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Nothing generates in the background here."""
        yield

    def shutdown(self) -> None:
        """No producer to stop (the generator is shut down by `RunParts.shutdown`)."""
