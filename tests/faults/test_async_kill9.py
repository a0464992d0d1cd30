"""kill -9 of an asynchronous GRPO run (grpo.async_grpo), then the same command again until it completes.

At age 0 the async run trains exactly what the synchronous run trains, so the resumed run must equal the
uninterrupted *synchronous* reference bitwise (metrics, weights, optimizer, data order, RNG). At age 1 a
resume regenerates the groups that were buffered or in flight with the resumed weights, so the metrics
may differ from an uninterrupted run, but each step is logged once and the saved data position (the
trained frontier) ends where the reference's does: no prompt is skipped or trained twice.
"""

from __future__ import annotations

import json
import random

import pytest

from tests.faults.harness import STEPS, assert_same_run, published_checkpoints_are_intact, read_metrics, start
from tests.faults.test_kill9 import kill_at
from tests.integration.grpo_helpers import RAY_DISAGGREGATED

pytestmark = pytest.mark.integration

AGE_0 = ("grpo.async_grpo.enabled=true", "grpo.async_grpo.max_trajectory_age_steps=0")
AGE_1 = (
    "grpo.async_grpo.enabled=true",
    "grpo.async_grpo.max_trajectory_age_steps=1",
    "loss_fn.use_importance_sampling_correction=true",
)


def run_with_kills(model_dir, out, moments: list[str], extra: tuple[str, ...]) -> list[str]:
    rng = random.Random(29)
    survived = []
    for _ in range(20):  # restarts until the run completes
        process = start(model_dir, out, *extra)
        if moments and kill_at(process, out, moments[0], rng):
            survived.append(moments.pop(0))
            published_checkpoints_are_intact(out / "ckpt")
            continue
        assert process.wait(timeout=600) == 0, (out / "stderr.log").read_text()[-3000:]
        break
    assert published_checkpoints_are_intact(out / "ckpt") == [STEPS - 1, STEPS]
    return survived


def test_kill9_of_an_age_0_async_run_resumes_to_the_synchronous_run_exactly(tiny_model_dir, reference, tmp_path):
    survived = run_with_kills(tiny_model_dir, tmp_path / "run", ["inside a save", "after a logged step"], AGE_0)
    assert survived == ["inside a save", "after a logged step"]
    assert_same_run(reference, tmp_path / "run")


def assert_trained_frontier_equals_the_references(out, reference):
    """Every step logged once, within the age bound, and the saved data position and consumed prompts equal to
    the uninterrupted run's: no prompt skipped or trained twice (the metrics may differ: a resume regenerates)."""
    rows = read_metrics(out / "logs")
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))  # every step logged exactly once
    assert all(r["async/age_max"] <= 1 for r in rows)
    final, want = out / "ckpt" / f"step_{STEPS}", reference / "ckpt" / f"step_{STEPS}"
    assert json.loads((final / "dataloader.json").read_text()) == json.loads((want / "dataloader.json").read_text())
    info = json.loads((final / "training_info.json").read_text())
    assert info["consumed_prompts"] == json.loads((want / "training_info.json").read_text())["consumed_prompts"]


def test_kill9_of_an_age_1_async_run_skips_and_repeats_no_prompt(tiny_model_dir, reference, tmp_path):
    out = tmp_path / "run"
    survived = run_with_kills(tiny_model_dir, out, ["after a logged step"], AGE_1)
    assert survived == ["after a logged step"]
    assert_trained_frontier_equals_the_references(out, reference)


@pytest.mark.ray
def test_kill9_of_an_age_1_async_run_on_ray_skips_and_repeats_no_prompt(tiny_model_dir, reference, tmp_path):
    # The driver dies with its producer thread and the Ray actors it started (Ray ties a local cluster's
    # processes to the driver's life); the next command starts a fresh cluster and resumes from the last
    # published checkpoint, regenerating what was buffered or in flight.
    out = tmp_path / "run"
    survived = run_with_kills(tiny_model_dir, out, ["after a logged step", "inside a save"], (*AGE_1, *RAY_DISAGGREGATED))
    assert survived == ["after a logged step", "inside a save"]
    assert_trained_frontier_equals_the_references(out, reference)
