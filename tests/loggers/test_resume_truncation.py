"""On resume from step N, logs keep steps <= N only: no duplicate rows once the steps are logged again."""

from __future__ import annotations

import json

import pytest

from reinforge.core.run_config import LoggerConfig
from reinforge.loggers import MultiLogger
from reinforge.loggers.jsonl import JsonlLogger


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_jsonl_drops_rows_and_samples_after_the_resumed_step(tmp_path):
    first = JsonlLogger(LoggerConfig(), tmp_path, run_name="r", total_steps=None)
    for step in range(0, 5):
        first.log({"train/loss": float(step)}, step)
        first.log_samples([{"prompt": f"p{step}"}], step)
    first._metrics_file.write('{"step": 5, "train/lo')  # a line torn by kill -9
    first._metrics_file.flush()
    first.close()

    resumed = JsonlLogger(LoggerConfig(), tmp_path, run_name="r", total_steps=None)
    MultiLogger([resumed]).resume_at(2, {"train/loss": 2.0})
    resumed.log({"train/loss": 30.0}, 3)
    resumed.close()
    assert rows(tmp_path / "metrics.jsonl") == [
        {"step": 0, "train/loss": 0.0},
        {"step": 1, "train/loss": 1.0},
        {"step": 2, "train/loss": 2.0},
        {"step": 3, "train/loss": 30.0},
    ]
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["step_0.jsonl", "step_1.jsonl", "step_2.jsonl"]


def test_jsonl_restores_the_checkpoint_step_row_lost_in_a_crash(tmp_path):
    first = JsonlLogger(LoggerConfig(), tmp_path, run_name="r", total_steps=None)
    first.log({"train/loss": 1.0}, 1)
    first.close()  # killed after checkpoint 2 was saved, before its row was written
    resumed = JsonlLogger(LoggerConfig(), tmp_path, run_name="r", total_steps=None)
    resumed.resume_at(2, {"train/loss": 2.0, "val/accuracy": None})
    resumed.close()
    assert rows(tmp_path / "metrics.jsonl") == [{"step": 1, "train/loss": 1.0}, {"step": 2, "train/loss": 2.0, "val/accuracy": None}]


def test_tensorboard_purges_events_after_the_resumed_step(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from reinforge.loggers.tensorboard import SUBDIR, TensorBoardLogger

    first = TensorBoardLogger(LoggerConfig(), tmp_path, run_name="r", total_steps=None)
    for step in range(1, 6):
        first.log({"train/loss": float(step)}, step)
    first.close()
    resumed = TensorBoardLogger(LoggerConfig(), tmp_path, run_name="r", total_steps=None)
    resumed.resume_at(3, {})
    for step in (4, 5):
        resumed.log({"train/loss": 10.0 * step}, step)
    resumed.close()
    events = EventAccumulator(str(tmp_path / SUBDIR))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0), (5, 50.0)]
