"""Runs that train nothing do not exit 0 quietly.

The tiny model never answers an arithmetic problem within 12 tokens: every reward is 0, every
response truncated, so every advantage is 0 and the run learns nothing. It used to finish with
status 0 and no word; now it warns once after 5 such steps, naming the likely causes with the
run's numbers and the environment's counters. A prompt limit above the sequence limit is warned
about at start with the counts; `grpo.num_generations_per_prompt=1` is refused at load (see
`test_bad_inputs.py`, case one-generation-per-prompt).
"""

from __future__ import annotations

import pytest

from reinforge.core.run_guard import ZeroSignalWatch
from tests.faults.harness import run
from tests.integration.grpo_helpers import read_metrics

pytestmark = pytest.mark.integration


def test_a_run_whose_advantages_stay_zero_warns_once_naming_the_causes(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    limits = ("checkpointing.enabled=false", "data.max_input_seq_length=100")  # policy.max_total_sequence_length is 96
    assert run(tiny_model_dir, out, *limits) == 0, (out / "stderr.log").read_text()[-3000:]
    assert all(r["train/advantages_max_abs"] == 0 for r in read_metrics(out / "logs"))
    err = " ".join((out / "stderr.log").read_text().split())
    assert err.count("train/advantages_max_abs was 0 for 5 consecutive steps (steps 1-5)") == 1
    assert "a reward that never varies within a prompt's group (mean reward 0, spread within the batch 0)" in err
    assert "every response cut at the length limit (truncation rate 1; raise policy.generation.max_new_tokens)" in err
    assert "env/no_answer=8" in err and "env/num_answers=8" in err
    assert (
        "data.max_input_seq_length=100 is above policy.max_total_sequence_length=96: a prompt of 96 tokens or more "
        "leaves no room for a response; 0 of 40 training prompts are that long"
    ) in err


def test_the_watch_counts_consecutive_zero_steps_only_and_ignores_algorithms_without_advantages():
    watch = ZeroSignalWatch(patience=3)
    zero, signal = {"train/advantages_max_abs": 0.0}, {"train/advantages_max_abs": 0.7}
    assert [watch.observe(s, m) for s, m in enumerate([zero, zero, signal, zero, zero], start=1)] == [None] * 5
    message = watch.observe(6, zero)
    assert message is not None and "was 0 for 3 consecutive steps (steps 4-6)" in message
    assert watch.observe(7, zero) is None  # once per run
    sft = ZeroSignalWatch(patience=1)
    assert sft.observe(1, {"train/loss": 0.0}) is None
