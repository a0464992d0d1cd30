"""A run whose parts fail to build leaves nothing running: what the executor built is shut down, then the executor."""

from __future__ import annotations

import pytest

import reinforge as rf
import reinforge.executors.local as local_executor


class RecordingExecutor:
    """Builds a stand-in training backend, fails to build the generator, records every shutdown."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def training(self, policy, *, need_reference, seed):
        executor = self

        class Policy:
            def shutdown(self) -> None:
                executor.events.append("policy.shutdown")

        self.events.append("training")
        return Policy()

    def generation(self, model, generation, *, seed):
        self.events.append("generation")
        raise RuntimeError("the generator could not start")

    def environment(self, env):  # pragma: no cover - the run fails before it
        raise AssertionError("not reached")

    def shutdown(self) -> None:
        self.events.append("executor.shutdown")


def test_a_part_that_fails_to_build_shuts_down_what_was_built_and_the_executor(tiny_model_dir, monkeypatch):
    executor = RecordingExecutor()
    monkeypatch.setattr(local_executor, "make_executor", lambda cluster, registry: executor)
    with pytest.raises(RuntimeError, match="the generator could not start"):
        rf.Trainer(
            algorithm=rf.GRPO(),
            policy=rf.backends.DTensorTraining(str(tiny_model_dir)),
            train_data=[{"problem": "1 + 1", "answer": "2"}] * 8,
            environment=lambda prompt, response, **_: 0.0,
        )
    assert executor.events == ["training", "generation", "policy.shutdown", "executor.shutdown"]


def test_a_missing_environment_is_refused_before_the_executor_starts(tiny_model_dir, monkeypatch):
    executor = RecordingExecutor()
    monkeypatch.setattr(local_executor, "make_executor", lambda cluster, registry: executor)
    with pytest.raises(rf.ReinforgeError, match="no environment was given"):
        rf.Trainer(algorithm=rf.GRPO(), policy=rf.backends.DTensorTraining(str(tiny_model_dir)),
                   train_data=[{"problem": "1 + 1", "answer": "2"}] * 8)  # fmt: skip
    assert executor.events == []
