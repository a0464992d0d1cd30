"""Implementations behind `raytest_plugins.py` (imported inside Ray workers through the registry)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import attrs

from reinforge.backends.training.dtensor.backend import DTensorBackend
from reinforge.backends.training.dtensor.config import DTensorConfig
from reinforge.core.interfaces import EnvironmentStep


def checksum_reward(conversation: list[dict[str, str]]) -> float:
    """A reward that varies from response to response (an untrained model's rewards would all be 0)."""
    text = "".join(m["content"] for m in conversation if m["role"] == "assistant")
    return (sum(map(ord, text)) % 11) / 10


class ChecksumEnvironment:
    summed_metrics = ("num_scored",)

    def step(self, conversations: list[list[dict[str, str]]], metadata: list[dict[str, Any]]) -> EnvironmentStep:
        rewards = [checksum_reward(c) for c in conversations]
        n = len(conversations)
        return EnvironmentStep(
            rewards=rewards,
            observations=[None] * n,
            done=[True] * n,
            metrics={"reward_mean": sum(rewards) / n if n else 0.0, "num_scored": float(n), "pid_max": float(os.getpid())},
            info=[{"pid": os.getpid()} for _ in range(n)],
        )

    def shutdown(self) -> None:
        pass


@attrs.define(kw_only=True, frozen=True)
class CrashOnceConfig:
    marker: str


class CrashOnceEnvironment(ChecksumEnvironment):
    def __init__(self, config: CrashOnceConfig) -> None:
        self.marker = Path(config.marker)

    def step(self, conversations: list[list[dict[str, str]]], metadata: list[dict[str, Any]]) -> EnvironmentStep:
        if not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            os._exit(1)  # a hard crash mid-step, as a segfaulting verifier would
        return super().step(conversations, metadata)


@attrs.define(kw_only=True, frozen=True)
class CrashingDTensorConfig(DTensorConfig):
    crash_marker: str
    crash_rank: int = 1


class CrashingDTensorBackend(DTensorBackend):
    def train(self, batch: Any, loss_fn: Any, temperature: float = 1.0) -> dict[str, float]:
        marker = Path(self.options.crash_marker)
        if self.ctx.rank == self.options.crash_rank and self.step >= 1 and not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(1)  # dies while rank 0 waits in the step's collectives
        return super().train(batch, loss_fn, temperature)
