"""benchmarks/target_log_softmax.py: the medians and the ratio it reports are those of the runs it timed."""

from __future__ import annotations

import statistics

import pytest

from benchmarks.target_log_softmax import measure


def test_the_benchmark_reports_the_medians_and_ratio_of_its_runs():
    case = measure(positions=8, vocab=50, repeats=3)
    assert (case["positions"], case["vocab"]) == (8, 50)
    seconds = case["all_seconds"]
    assert set(seconds) == {"composed", "TargetLogSoftmax"}
    for name, values in seconds.items():
        assert len(values) == 3 and all(v > 0 for v in values)
        assert case["median_seconds"][name] == statistics.median(values)
    assert case["ratio_to_composed"] == pytest.approx(
        statistics.median(seconds["TargetLogSoftmax"]) / statistics.median(seconds["composed"])
    )
