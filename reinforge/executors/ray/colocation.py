"""Turn-taking on shared devices: the trainer offloads before the engines generate, the engines sleep before training.

Why here and not in the algorithm: whether the trainer and the engines share devices is a
placement decision (`cluster.colocated`), so the algorithm keeps calling the seams as it always
does (`generation.wake()`, `generate`, `generation.sleep()`, `policy.train`) and the Ray proxies
switch phases when one is needed. Disaggregated groups have devices of their own: no switching.
"""

from __future__ import annotations

from typing import Protocol


class _Offloadable(Protocol):
    def offload_workers(self) -> None: ...

    def onload_workers(self) -> None: ...


class _Sleepable(Protocol):
    def sleep_workers(self) -> None: ...

    def wake_workers(self) -> None: ...


class Colocation:
    """Which group currently holds the shared devices; each switch calls the seams' offload/onload/sleep/wake."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.training: _Offloadable | None = None
        self.generation: _Sleepable | None = None
        self.phase: str | None = None  # "training", "generation", or None when unknown

    def before_generation(self) -> None:
        """Offload the trainer, wake the engines (once per switch)."""
        if not self.enabled or self.phase == "generation":
            return
        if self.training is not None:
            self.training.offload_workers()
        if self.generation is not None:
            self.generation.wake_workers()
        self.phase = "generation"

    def before_training(self) -> None:
        """Put the engines to sleep, onload the trainer (once per switch)."""
        if not self.enabled or self.phase == "training":
            return
        if self.generation is not None:
            self.generation.sleep_workers()
        if self.training is not None:
            self.training.onload_workers()
        self.phase = "training"

    def forget(self) -> None:
        """Someone moved memory outside a switch (refit, an explicit offload): the next switch redoes both halves."""
        self.phase = None
