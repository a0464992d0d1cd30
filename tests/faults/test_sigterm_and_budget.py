"""The first SIGTERM (what a scheduler sends before killing a job) and `checkpointing.save_before_minutes`
save a checkpoint and exit 0; the same command then finishes the run exactly as if nothing happened."""

from __future__ import annotations

import signal

import pytest

from tests.faults.harness import STEPS, assert_same_run, published_checkpoints_are_intact, rows_logged, run, start, wait_for
from tests.integration.grpo_helpers import read_metrics

pytestmark = pytest.mark.integration
ONLY_AT_THE_END = "checkpointing.save_period=1000"  # no periodic saves: whatever is on disk came from the stop


def test_sigterm_saves_and_exits_zero_then_the_run_resumes_exactly(tiny_model_dir, reference, tmp_path):
    out = tmp_path / "run"
    process = start(tiny_model_dir, out, ONLY_AT_THE_END)
    assert wait_for(process, rows_logged(out / "logs", 2), poll_s=0.01), (out / "stderr.log").read_text()[-3000:]
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=300) == 0, (out / "stderr.log").read_text()[-3000:]
    stopped = [r["step"] for r in read_metrics(out / "logs")]
    k = stopped[-1]
    assert 2 <= k < STEPS and stopped == list(range(1, k + 1))
    assert published_checkpoints_are_intact(out / "ckpt") == [k]
    assert f"stopped after step {k}: SIGTERM received; resume with the same command" in (out / "stderr.log").read_text()

    assert run(tiny_model_dir, out, ONLY_AT_THE_END) == 0, (out / "stderr.log").read_text()[-3000:]
    assert_same_run(reference, out)


def test_save_before_minutes_saves_and_exits_zero_before_the_budget_ends(tiny_model_dir, reference, tmp_path):
    out = tmp_path / "run"
    # A budget of 6 ms: any real step is longer, so the run must stop after its first step whatever the
    # machine's speed (a budget of seconds made this depend on the load: a quiet machine finished all steps).
    assert run(tiny_model_dir, out, ONLY_AT_THE_END, "checkpointing.save_before_minutes=0.0001") == 0
    stopped = [r["step"] for r in read_metrics(out / "logs")]
    k = stopped[-1]
    assert k == 1 and stopped == [1], (out / "stderr.log").read_text()[-3000:]
    assert published_checkpoints_are_intact(out / "ckpt") == [k]
    assert f"stopped after step {k}: checkpointing.save_before_minutes=0.0001 would be exceeded" in (out / "stderr.log").read_text()

    assert run(tiny_model_dir, out, ONLY_AT_THE_END) == 0, (out / "stderr.log").read_text()[-3000:]
    assert_same_run(reference, out)
