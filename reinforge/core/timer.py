"""Per-phase wall-clock timing, so every step says where its time went."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

# What keeps each side busy. Refit occupies both: the trainer gathers and sends, the generator loads.
# Validation is covered through its own "generation" phases (the rollout service times them).
GENERATOR_PHASES = ("generation", "refit")
TRAINER_PHASES = ("logprobs", "training", "refit", "checkpoint")


class Timer:
    """Accumulates seconds per phase name until `pop()`; nested phases are allowed and overlap."""

    def __init__(self) -> None:
        self._seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self._seconds[name] += time.perf_counter() - start

    def add(self, name: str, seconds: float) -> None:
        self._seconds[name] += seconds

    def pop(self, prefix: str = "timing/") -> dict[str, float]:
        """The phases measured since the last pop, as `timing/<phase>` metrics; then reset."""
        metrics = {f"{prefix}{name}": seconds for name, seconds in self._seconds.items()}
        self._seconds.clear()
        return metrics


def idle_times(phases: dict[str, float], prefix: str = "timing/") -> dict[str, float]:
    """How long the generator and the trainer each sat idle during a step, from its `pop()`ed phases.

    idle = `total` - the sum of that side's busy phases (GENERATOR_PHASES / TRAINER_PHASES), floored
    at 0. The step's loop is sequential on both executors, so this is the real wait: in one process
    (colocated) each side waits while the other works, and on Ray worker groups (disaggregated) the
    generator group waits through logprobs and training, the trainer group through generation and
    rewards. Steps without a generator (SFT, DPO) get no `generation_idle`; without `total`, nothing.
    Asynchronous GRPO adds the producer thread's generation and reward seconds to the step's phases (from the
    trainer thread, when it takes the step's groups): they overlap the trainer's, and the formula keeps its meaning.
    """
    total = phases.get(f"{prefix}total")
    if total is None:
        return {}
    out: dict[str, float] = {}
    sides = {"generation_idle": GENERATOR_PHASES, "training_idle": TRAINER_PHASES}
    for name, busy_phases in sides.items():
        present = [phases[f"{prefix}{phase}"] for phase in busy_phases if f"{prefix}{phase}" in phases]
        if name == "generation_idle" and f"{prefix}generation" not in phases:
            continue  # no generator in this step
        out[f"{prefix}{name}"] = max(total - sum(present), 0.0)
    return out
