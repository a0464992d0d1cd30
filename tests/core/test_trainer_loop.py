"""The Trainer's own bookkeeping with fake parts: the schedule, when it validates and saves, and resume.

Everything but the tokenizer (the tiny model's, for the run's prompts) is a fake defined here, passed
through the public constructor `reinforge.Trainer(...)`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest

import reinforge as rf


class FakeAlgorithm:
    needs_generation = False
    async_rollouts_max_age = None  # no rollouts
    needs_environment = False
    needs_reference = False

    def __init__(self, per_step: int = 3) -> None:
        self.per_step = per_step
        self.steps: list[tuple[int, list[int]]] = []  # (step, the records' ids it trained on)
        self.validated: list[int] = []
        self.loaded_state: dict[str, Any] | None = None

    def records_per_step(self, policy: Any) -> int:
        return self.per_step

    def prepare_data(self, records: list[dict[str, Any]], tokenizer: Any, *, data: Any, policy: Any, source: str) -> tuple[list[Any], dict[str, Any]]:
        return [r["id"] for r in records], {"records": len(records)}

    def setup(self, run: Any) -> None:
        self.run = run

    def train_step(self, step: int, prompts: list[Any]) -> dict[str, float]:
        self.steps.append((step, list(prompts)))
        return {"train/loss": float(step)}

    def validate(self, step: int) -> dict[str, float]:
        self.validated.append(step)
        return {"val/accuracy": step / 10}

    def state_dict(self) -> dict[str, Any]:
        return {"steps_taken": len(self.steps)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loaded_state = state


class FakePolicy:
    """A training backend that only records checkpoint calls."""

    def __init__(self) -> None:
        self.saved: list[str] = []
        self.loaded: list[str] = []
        self.shut_down = False

    def save(self, directory: str) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / "weights.txt").write_text(directory)
        self.saved.append(Path(directory).parent.name.removeprefix("tmp_"))  # written into tmp_step_N, then renamed

    def load(self, directory: str) -> None:
        self.loaded.append(Path(directory).parent.name)

    def shutdown(self) -> None:
        self.shut_down = True


class RecordingLogger:
    def __init__(self) -> None:
        self.rows: list[tuple[int, dict[str, float]]] = []
        self.closed = False

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.rows.append((step, dict(metrics)))

    def close(self) -> None:
        self.closed = True


def make(model_dir: Path, loop: rf.LoopConfig, *, val: bool = True, records: int = 10) -> tuple[rf.Trainer, FakeAlgorithm, FakePolicy, RecordingLogger]:
    algorithm, policy, logger = FakeAlgorithm(), FakePolicy(), RecordingLogger()
    trainer = rf.Trainer(
        algorithm=algorithm,
        policy=rf.backends.Training("fake", str(model_dir), instance=policy),
        train_data=[{"id": i} for i in range(records)],
        val_data=[{"id": 100 + i} for i in range(4)] if val else None,
        loop=loop,
        loggers=[logger],
    )
    return trainer, algorithm, policy, logger


def test_schedule_validation_and_checkpoint_timing(tiny_model_dir, tmp_path):
    loop = rf.LoopConfig(max_steps=5, val_period=2, val_at_start=True, checkpoint_dir=str(tmp_path / "ckpt"), save_period=2, seed=1)
    trainer, algorithm, policy, logger = make(tiny_model_dir, loop)
    last = trainer.fit()
    assert [step for step, _ in algorithm.steps] == [1, 2, 3, 4, 5]
    assert all(len(batch) == 3 for _, batch in algorithm.steps)  # records_per_step
    # 10 records in batches of 3: each epoch serves 3 batches (9 records, no repeats within an epoch).
    first_epoch = [i for _, batch in algorithm.steps[:3] for i in batch]
    assert len(set(first_epoch)) == 9 and set(first_epoch) <= set(range(10))
    assert algorithm.validated == [0, 2, 4, 5]  # at start, every 2 steps, and after the last step
    assert policy.saved == ["step_2", "step_4", "step_5"]  # every save_period steps, and the last
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["step_2", "step_4", "step_5"]
    assert [step for step, _ in logger.rows] == [0, 1, 2, 3, 4, 5]
    assert logger.rows[2][1]["val/accuracy"] == 0.2 and "val/accuracy" not in logger.rows[3][1]
    assert last["train/loss"] == 5.0 and last["val/accuracy"] == 0.5
    assert policy.shut_down and logger.closed  # fit() releases every part


def test_no_validation_without_validation_data_and_no_checkpoints_without_a_dir(tiny_model_dir, tmp_path):
    trainer, algorithm, policy, _ = make(tiny_model_dir, rf.LoopConfig(max_steps=3, val_period=0), val=False)
    trainer.fit()
    assert algorithm.validated == [] and policy.saved == []
    assert [step for step, _ in algorithm.steps] == [1, 2, 3]


def test_resume_continues_the_uninterrupted_run(tiny_model_dir, tmp_path):
    def loop(steps: int, where: str) -> rf.LoopConfig:
        return rf.LoopConfig(max_steps=steps, checkpoint_dir=str(tmp_path / where), save_period=2, seed=7)

    full, full_algorithm, _, _ = make(tiny_model_dir, loop(7, "full"))
    full.fit()
    first, _, _, _ = make(tiny_model_dir, loop(5, "split"))
    first.fit()
    resumed, algorithm, policy, logger = make(tiny_model_dir, loop(7, "split"))
    resumed.fit()
    assert policy.loaded == ["step_5"]  # the latest complete checkpoint
    assert algorithm.loaded_state == {"steps_taken": 5}
    assert [step for step, _ in algorithm.steps] == [6, 7]
    # The data stream continues where it stopped: the same batches the uninterrupted run trained on.
    assert algorithm.steps == full_algorithm.steps[5:]
    assert [step for step, _ in logger.rows] == [6, 7]


def test_a_half_written_checkpoint_is_never_resumed(tiny_model_dir, tmp_path):
    first, _, _, _ = make(tiny_model_dir, rf.LoopConfig(max_steps=2, checkpoint_dir=str(tmp_path), save_period=1))
    first.fit()
    (tmp_path / "tmp_step_9").mkdir()  # what a crash during a save leaves behind
    again, algorithm, policy, _ = make(tiny_model_dir, rf.LoopConfig(max_steps=3, checkpoint_dir=str(tmp_path), save_period=1))
    again.fit()
    assert policy.loaded == ["step_2"] and [step for step, _ in algorithm.steps] == [3]


def test_user_errors_in_the_composition_are_reinforge_errors(tiny_model_dir):
    with pytest.raises(rf.ReinforgeError, match="list of dicts"):
        make_with(tiny_model_dir, train_data="train.jsonl")
    with pytest.raises(rf.ReinforgeError, match="no training data"):
        make_with(tiny_model_dir, train_data=[])
    with pytest.raises(rf.ReinforgeError, match="DTensorTraining"):
        rf.Trainer(algorithm=FakeAlgorithm(), policy=FakePolicy(), train_data=[{"id": 1}])


def make_with(model_dir: Path, **overrides: Any) -> rf.Trainer:
    parts = {
        "algorithm": FakeAlgorithm(),
        "policy": rf.backends.Training("fake", str(model_dir), instance=FakePolicy()),
        "train_data": [{"id": i} for i in range(10)],
        "loggers": [],
    }
    return rf.Trainer(**{**parts, **overrides})


def test_the_console_shows_step_of_total_with_an_eta(tiny_model_dir, tmp_path, capsys):
    trainer = make_with(tiny_model_dir, loop=rf.LoopConfig(max_steps=3), loggers=["console"], log_dir=str(tmp_path / "my-run" / "logs"))
    trainer.fit()
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in lines] == ["1/3", "2/3", "3/3"]  # not piped to a terminal: one line per step
    assert "loss 1.000" in lines[0] and "eta " in lines[0] and lines[-1].endswith("eta 0.0s")


def test_the_run_is_named_after_its_folder_not_logs():
    from reinforge.compose import run_name

    assert run_name("results/grpo-arith-cpu/logs") == "grpo-arith-cpu"  # the bar was titled "logs"
    assert run_name("results/exp7") == "exp7" and run_name("logs") == "logs"


class SpyRollouts:
    """A rollout service that records when the loop holds its producer and when it is shut down."""

    def __init__(self, events: list[str]) -> None:
        self.events = events

    @contextlib.contextmanager
    def paused(self):
        self.events.append("pause")
        yield
        self.events.append("resume")

    def shutdown(self) -> None:
        self.events.append("rollouts shut down")


def test_saves_hold_the_rollout_producer_and_shutdown_stops_it_before_the_other_parts(tiny_model_dir, tmp_path):
    loop = rf.LoopConfig(max_steps=2, val_period=0, checkpoint_dir=str(tmp_path / "ckpt"), save_period=1)
    trainer, _, policy, _ = make(tiny_model_dir, loop, val=False)
    events: list[str] = []
    trainer.run.rollouts = SpyRollouts(events)
    policy.save = lambda directory, save=policy.save: (events.append("save"), save(directory))[1]
    policy.shutdown = lambda shutdown=policy.shutdown: (events.append("policy shut down"), shutdown())[1]
    trainer.fit()
    assert events == ["pause", "save", "resume", "pause", "save", "resume", "rollouts shut down", "policy shut down"]
