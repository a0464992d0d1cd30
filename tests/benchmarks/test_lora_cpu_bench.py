"""benchmarks/lora_cpu.py: the criteria by hand, and one side of the training-step measurement on the tiny model."""

from __future__ import annotations

import pytest

from benchmarks import lora_cpu


def test_criteria_by_hand():
    full = {"t": 10.0, "rss": 5.6e9, "checkpoint_bytes": 1000, "held_out_gain": 0.33}
    lora = {"t": 8.0, "rss": 4.2e9, "checkpoint_bytes": 40, "held_out_gain": 0.27}
    got = lora_cpu.criteria(full, lora, time_key="t", rss_key="rss")
    assert got["training_time_ratio"] == pytest.approx(0.8) and got["training_time_ok"]
    assert got["peak_rss_saving_bytes"] == pytest.approx(1.4e9) and got["peak_rss_ok"]
    assert got["checkpoint_ratio"] == pytest.approx(0.04) and got["checkpoint_ok"]
    assert got["held_out_gain_ratio"] == pytest.approx(0.27 / 0.33) and got["held_out_ok"]  # 0.818 >= 0.8
    worse = lora_cpu.criteria(full, {**lora, "t": 9.5, "rss": 4.5e9, "held_out_gain": 0.25}, time_key="t", rss_key="rss")
    assert not (worse["training_time_ok"] or worse["peak_rss_ok"] or worse["held_out_ok"])


def test_a_side_of_the_training_step_runs_on_the_tiny_model(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    lora = lora_cpu.train_side("lora", str(tiny_model_dir), steps=2, rows=4, prompt=6, response=4, threads=1)
    assert lora["lora"]["dim"] == 16 and 0 < lora["trainable_parameters"] < 0.5 * lora["parameters"]
    assert len(lora["step_seconds"]) == 2 and lora["checkpoint_bytes"] > 0 and lora["peak_rss_bytes"] > 0
    assert lora["memory_estimate"]["gradients"] == lora["trainable_parameters"] * 4  # float32, adapters only
