"""Environments that misbehave on purpose, registered as a local plugin by the reward-fault tests.

`reinforge train --plugins plugins.toml` loads this file as a user's project plugin would be
loaded; each environment scores like a simple exact-match reward except where it is told to
fail. Which rows fail is chosen by the answer (so the same problem always fails the same way).
"""

from __future__ import annotations

import threading
from typing import Any

import attrs

from reinforge.core.hookspecs import hookimpl
from reinforge.core.interfaces import EnvironmentStep

# Set by a hanging call so that a test can check the run went on (or stopped) without waiting for it.
HANG_STARTED = threading.Event()


@attrs.define(kw_only=True, frozen=True)
class FaultConfig:
    fail_every: int = 1  # conversations whose answer is a multiple of this fail (1: all of them)
    hang_s: float = 3600.0  # how long a hanging call sleeps


class _Base:
    def __init__(self, config: FaultConfig | None = None) -> None:
        self.config = config or FaultConfig()

    def _fails(self, meta: dict[str, Any]) -> bool:
        return int(meta["answer"]) % self.config.fail_every == 0

    def step(self, conversations: list, metadata: list) -> EnvironmentStep:
        n = len(conversations)
        rewards = [self.reward(m) if self._fails(m) else 1.0 for m in metadata]
        return EnvironmentStep(rewards=rewards, observations=[None] * n, done=[True] * n, metrics={"seen": float(n)})

    def reward(self, meta: dict[str, Any]) -> float:
        raise NotImplementedError

    def shutdown(self) -> None:
        pass


class RaisingEnvironment(_Base):
    def reward(self, meta: dict[str, Any]) -> float:
        raise ZeroDivisionError(f"reward function broke on answer {meta['answer']}")


class HangingEnvironment(_Base):
    def reward(self, meta: dict[str, Any]) -> float:
        HANG_STARTED.set()
        threading.Event().wait(self.config.hang_s)
        return 1.0


class NaNEnvironment(_Base):
    def reward(self, meta: dict[str, Any]) -> float:
        return float("nan")


class ShortEnvironment(_Base):
    """Answers one reward too few."""

    def step(self, conversations: list, metadata: list) -> EnvironmentStep:
        n = len(conversations)
        return EnvironmentStep(rewards=[1.0] * (n - 1), observations=[None] * n, done=[True] * n)


@hookimpl
def reinforge_register_environments(register) -> None:  # noqa: ANN001
    for name, cls in (
        ("raising", RaisingEnvironment),
        ("hanging", HangingEnvironment),
        ("nan_reward", NaNEnvironment),
        ("short", ShortEnvironment),
    ):
        register(name, cls, config=FaultConfig, description=f"test environment: {name}")
