"""A reward that hangs holds the run for a deadline proportional to the batch, printed at start, not 30
minutes: the default `env.guard.timeout_s` was a fixed 1,800 s. At the deadline the guard says so
naming the environment, then finds the conversation that hangs and names its index."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from reinforge.core.env_guard import EnvGuardConfig, GuardedEnvironment
from reinforge.core.errors import ReinforgeError
from reinforge.core.interfaces import EnvironmentStep


class HangsOn:
    """Scores every conversation 1.0, except that a call including conversation `row` never returns."""

    def __init__(self, row: int) -> None:
        self.row = row
        self.release = threading.Event()

    def step(self, conversations: list, metadata: list) -> EnvironmentStep:
        if any(m["row"] == self.row for m in metadata):
            self.release.wait(30)
        n = len(conversations)
        return EnvironmentStep(rewards=[1.0] * n, observations=[None] * n, done=[True] * n)


def test_the_default_deadline_grows_with_the_batch_and_is_not_half_an_hour():
    config = EnvGuardConfig()
    assert config.timeout_s is None
    assert config.deadline_s(8) == 60 + 2 * 8
    assert config.deadline_s(512) == 60 + 2 * 512
    assert EnvGuardConfig(timeout_s=300).deadline_s(8) == 300  # set explicitly, it is used as it is


def test_the_deadline_is_printed_once_not_once_per_batch_size(capsys):
    # multi-turn calls shrink as conversations finish: one line per size was a line per turn
    env = GuardedEnvironment(HangsOn(row=-1), name="judge")
    for n in (4, 4, 3, 1):
        env.step([[{"role": "assistant", "content": "x"}]] * n, [{"row": i} for i in range(n)])
    err = capsys.readouterr().err
    assert err.count("reinforge: environment 'judge': deadline") == 1
    assert "deadline 68 s for a call on 4 conversations (60 s + 2 s per conversation; env.guard.timeout_s sets it)" in err


def test_a_hang_is_reported_at_the_deadline_with_the_environment_and_the_conversation(caplog):
    hanging = HangsOn(row=2)
    config = EnvGuardConfig(timeout_base_s=0.3, timeout_per_conversation_s=0.05, sample_timeout_s=0.3, max_failure_rate=0.0)
    env = GuardedEnvironment(hanging, name="judge", config=config)
    started = time.monotonic()
    try:
        with caplog.at_level(logging.WARNING), pytest.raises(ReinforgeError) as stopped:
            env.step([[{"role": "assistant", "content": "x"}]] * 4, [{"row": i} for i in range(4)])
    finally:
        hanging.release.set()
    assert time.monotonic() - started < 5  # the batch deadline (0.5 s) and conversation 2's (0.3 s), not minutes
    assert "environment 'judge': a call on 4 conversations did not finish within 0.5 s" in caplog.text
    assert "environment 'judge' failed on more than 0% of a batch of 4" in str(stopped.value)
    assert "conversation 2 did not finish within 0.3 s" in str(stopped.value)
