"""Per-step idle time of the generator and the trainer, from the Timer's phases."""

from __future__ import annotations

import pytest

from reinforge.core.timer import Timer, idle_times


def test_idle_times_hand_worked() -> None:
    phases = {"timing/total": 10.0, "timing/generation": 4.0, "timing/reward": 0.5, "timing/refit": 0.25,
              "timing/logprobs": 1.5, "timing/training": 3.0, "timing/checkpoint": 0.5}
    idle = idle_times(phases)
    # generator busy: generation 4 + refit 0.25; trainer busy: logprobs 1.5 + training 3 + refit 0.25 + checkpoint 0.5
    assert idle == {"timing/generation_idle": 5.75, "timing/training_idle": 4.75}


def test_idle_times_without_a_generator_or_a_total() -> None:
    # SFT / DPO: no generation phase, so no generator to be idle
    assert idle_times({"timing/total": 2.0, "timing/training": 1.5}) == {"timing/training_idle": 0.5}
    assert idle_times({"timing/generation": 1.0}) == {}
    # phases measured separately can add up past the total by round-off: idle never goes negative
    assert idle_times({"timing/total": 1.0, "timing/generation": 1.0000001, "timing/training": 0.25}) == {
        "timing/generation_idle": 0.0, "timing/training_idle": 0.75}


def test_idle_times_of_popped_phases() -> None:
    timer = Timer()
    timer.add("total", 3.0)
    timer.add("generation", 1.0)
    timer.add("generation", 0.5)  # validation generates too: both count as generator work
    timer.add("training", 1.25)
    phases = timer.pop()
    assert idle_times(phases) == {"timing/generation_idle": pytest.approx(1.5), "timing/training_idle": pytest.approx(1.75)}
    assert timer.pop() == {}
