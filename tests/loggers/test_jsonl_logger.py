"""The JSONL logger: what a run leaves on disk for plotting and for other tools."""

from __future__ import annotations

import json
import math

import pytest

from reinforge.core.run_config import LoggerConfig
from reinforge.loggers.jsonl import JsonlLogger


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_metrics_round_trip_one_object_per_step(tmp_path):
    logger = JsonlLogger(LoggerConfig(), tmp_path / "run", run_name="r", total_steps=2)
    logger.log({"train/reward_mean": 0.25, "train/loss": 1.5, "timing/generation": 2.0}, step=1)
    logger.log({"train/reward_mean": 0.5, "val/pass@1": 0.75}, step=2)
    logger.close()

    assert _lines(tmp_path / "run" / "metrics.jsonl") == [
        {"step": 1, "train/reward_mean": 0.25, "train/loss": 1.5, "timing/generation": 2.0},
        {"step": 2, "train/reward_mean": 0.5, "val/pass@1": 0.75},
    ]


def test_lines_are_on_disk_before_close_and_a_resumed_run_appends(tmp_path):
    first = JsonlLogger(LoggerConfig(), tmp_path, run_name="r", total_steps=None)
    first.log({"train/loss": 1.0}, step=1)
    assert _lines(tmp_path / "metrics.jsonl") == [{"step": 1, "train/loss": 1.0}]  # flushed: a crash keeps it
    first.close()

    resumed = JsonlLogger(LoggerConfig(), tmp_path, run_name="r", total_steps=None)
    resumed.log({"train/loss": 0.5}, step=2)
    resumed.close()
    assert [r["step"] for r in _lines(tmp_path / "metrics.jsonl")] == [1, 2]


def test_values_are_strict_json(tmp_path):
    torch = pytest.importorskip("torch")
    logger = JsonlLogger(LoggerConfig(), tmp_path, run_name="r", total_steps=None)
    logger.log({"train/loss": float("nan"), "train/grad_norm": torch.tensor(2.5), "train/tokens": 7, "note": "x"}, step=3)
    logger.close()

    text = (tmp_path / "metrics.jsonl").read_text()
    assert "NaN" not in text
    record = json.loads(text)
    assert record == {"step": 3, "train/loss": None, "train/grad_norm": 2.5, "train/tokens": 7, "note": "x"}
    assert not any(isinstance(v, float) and math.isnan(v) for v in record.values())


def test_samples_go_to_one_file_per_step(tmp_path):
    logger = JsonlLogger(LoggerConfig(), tmp_path, run_name="r", total_steps=None)
    samples = [
        {"prompt": "1+1=", "response": "2", "reward": 1.0},
        {"prompt": "2+2=", "response": "5\nno", "reward": 0.0},
    ]
    logger.log_samples(samples, step=4)
    logger.log_samples([{"prompt": "3+3=", "response": "6", "reward": 1.0, "split": "val"}], step=4)
    logger.log_samples([], step=5)
    logger.close()

    assert _lines(tmp_path / "samples" / "step_4.jsonl") == [*samples, {"prompt": "3+3=", "response": "6", "reward": 1.0, "split": "val"}]
    assert not (tmp_path / "samples" / "step_5.jsonl").exists()


def test_log_config_writes_params_json(tmp_path):
    logger = JsonlLogger(LoggerConfig(), tmp_path, run_name="r", total_steps=None)
    logger.log_config({"policy": {"model_name": "tiny", "optimizer": {"lr": 1e-5}}, "loggers": ("console", "jsonl")})
    logger.close()

    assert json.loads((tmp_path / "params.json").read_text()) == {
        "policy": {"model_name": "tiny", "optimizer": {"lr": 1e-5}},
        "loggers": ["console", "jsonl"],
    }


def test_log_after_close_is_a_programming_error(tmp_path):
    logger = JsonlLogger(LoggerConfig(), tmp_path, run_name="r", total_steps=None)
    logger.close()
    logger.close()  # idempotent
    with pytest.raises(RuntimeError, match="after close"):
        logger.log({"train/loss": 1.0}, step=1)
