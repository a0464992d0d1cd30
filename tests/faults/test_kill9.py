"""kill -9 at random points — as a checkpoint save starts, inside a save, after a logged step, at
start-up — then the same command again until the run completes: no published checkpoint is ever
damaged, every step is logged exactly once, and the final weights, optimizer, data order and RNG
state equal the uninterrupted run's, bitwise.

CI runs a sample of 3 kills; REINFORGE_FAULTS_LONG=1 runs the long mode (>= 20 kills, about 10
minutes on 2 cores); REINFORGE_FAULTS_SEED picks other random points.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from tests.faults.harness import (
    STEPS,
    assert_same_run,
    kill9,
    published_checkpoints_are_intact,
    rows_logged,
    saving,
    start,
    wait_for,
)

pytestmark = pytest.mark.integration
LONG = os.environ.get("REINFORGE_FAULTS_LONG") == "1"
MOMENTS = ("as a save starts", "inside a save", "after a logged step", "at start-up")


def kill_at(process, out: Path, moment: str, rng: random.Random) -> bool:
    """Wait for `moment`, then kill -9; False if the run ended first."""
    ckpt, logs = out / "ckpt", out / "logs"
    if moment in ("as a save starts", "inside a save"):
        hit = wait_for(process, saving(ckpt))
        if hit and moment == "inside a save":
            time.sleep(rng.uniform(0.02, 0.25))  # a save of the tiny model takes ~0.3 s: DCP, manifest, fsync, rename
    elif moment == "after a logged step":
        metrics = logs / "metrics.jsonl"
        done = len(metrics.read_text().splitlines()) if metrics.is_file() else 0
        hit = wait_for(process, rows_logged(logs, done + rng.randint(1, 2)), poll_s=0.01)
    else:
        time.sleep(rng.uniform(0.5, 8.0))
        hit = True
    if not hit or process.poll() is not None:
        return False
    kill9(process)
    return True


def test_kill9_at_random_points_loses_nothing_and_resumes_exactly(tiny_model_dir, reference, tmp_path):
    rng = random.Random(int(os.environ.get("REINFORGE_FAULTS_SEED", "13")))
    schedule = [rng.choice(MOMENTS) for _ in range(20)] if LONG else ["as a save starts", "inside a save", "after a logged step"]
    survived: list[str] = []
    runs = 0
    while schedule:
        runs += 1
        out = tmp_path / f"run{runs}"
        for _ in range(40):  # restarts of this run until it completes
            process = start(tiny_model_dir, out)
            if schedule and kill_at(process, out, schedule[0], rng):
                survived.append(schedule.pop(0))
                published_checkpoints_are_intact(out / "ckpt")
                continue
            assert process.wait(timeout=600) == 0, (out / "stderr.log").read_text()[-3000:]
            break
        assert published_checkpoints_are_intact(out / "ckpt") == [STEPS - 1, STEPS]
        assert_same_run(reference, out)
    assert len(survived) == (20 if LONG else 3)
    print(f"\nkills survived: {len(survived)} over {runs} run(s): {survived}; every resume exact")
