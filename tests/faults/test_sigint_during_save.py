"""Ctrl-C (SIGINT) while a checkpoint is being written: the save is finished first, then the run exits
130 with "interrupted; last complete checkpoint: step N" and no traceback; the same command resumes
and ends exactly where the uninterrupted run ended.

Interrupted inside torch.save or DCP, a save used to die with their own error (RuntimeError
"unexpected pos", exit 1 with a traceback) in 2 of 3 tries.
"""

from __future__ import annotations

import random
import signal
import time

import pytest

from tests.faults.harness import STEPS, assert_same_run, published_checkpoints_are_intact, run, saving, start, wait_for

pytestmark = pytest.mark.integration


def test_sigint_inside_a_save_finishes_it_exits_130_and_the_run_resumes_exactly(tiny_model_dir, reference, tmp_path):
    out = tmp_path / "run"
    rng = random.Random(30)
    interrupted = []
    for attempt in range(3):
        process = start(tiny_model_dir, out)
        if not wait_for(process, saving(out / "ckpt")):
            break  # the run finished before this attempt's save began
        before = [int(p.name.removeprefix("step_")) for p in (out / "ckpt").glob("step_*")]  # the save under way is not among them
        time.sleep(rng.uniform(0.0, 0.15))  # somewhere inside the save (~0.3 s on the tiny model)
        process.send_signal(signal.SIGINT)
        rc = process.wait(timeout=300)
        log = (out / "stderr.log").read_text()
        assert "Traceback" not in log, log[-3000:]
        if rc == 0:
            break  # the signal came as the last save ended: nothing left to interrupt
        assert rc == 130, log[-3000:]
        kept = published_checkpoints_are_intact(out / "ckpt")
        assert kept and max(kept) > max(before, default=0)  # the save that was running was finished, not lost
        assert f"interrupted; last complete checkpoint: step {max(kept)}" in " ".join(log.split())
        interrupted.append(max(kept))
        (out / "stderr.log").write_text("")  # each attempt's messages on their own
    assert len(interrupted) >= 2, interrupted

    assert run(tiny_model_dir, out) == 0, (out / "stderr.log").read_text()[-3000:]
    assert published_checkpoints_are_intact(out / "ckpt") == [STEPS - 1, STEPS]
    assert_same_run(reference, out)
