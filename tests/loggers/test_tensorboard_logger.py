"""The TensorBoard logger writes event files TensorBoard itself can read back."""

from __future__ import annotations

import pytest

from reinforge.core.run_config import LoggerConfig

pytest.importorskip("tensorboard", reason="the tensorboard logger needs `pip install 'reinforge[tensorboard]'`")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from reinforge.loggers.tensorboard import TensorBoardLogger  # noqa: E402


def test_scalars_samples_and_config_are_readable(tmp_path):
    logger = TensorBoardLogger(LoggerConfig(), tmp_path, run_name="r", total_steps=2)
    logger.log({"train/reward_mean": 0.25, "timing/generation": 1.5, "note": "not a number", "bad": float("nan")}, step=1)
    logger.log({"train/reward_mean": 0.75, "val/pass@1": 0.5}, step=2)
    logger.log_samples([{"prompt": "1+1=", "response": "2 | two", "reward": 1.0}], step=2)
    logger.log_config({"policy": {"model_name": "tiny"}})
    logger.close()

    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert {"train/reward_mean", "timing/generation", "val/pass@1"} <= set(scalars)
    assert "note" not in scalars and "bad" not in scalars
    reward = [(e.step, e.value) for e in events.Scalars("train/reward_mean")]
    assert reward == [(1, 0.25), (2, 0.75)]

    # Text summaries are stored as string tensors.
    assert {"samples/text_summary", "config/text_summary"} <= set(events.Tags()["tensors"])
    table = events.Tensors("samples/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "| prompt | response | reward |" in table and "2 \\| two" in table
