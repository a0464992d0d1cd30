"""benchmarks/sampler.py: the medians and ratios it reports are those of the steps it timed."""

from __future__ import annotations

import statistics

import pytest

from benchmarks.sampler import measure


def test_the_sampler_benchmark_reports_the_medians_and_ratios_of_its_steps():
    case = measure(rows=4, vocab=300, repeats=3)
    assert (case["rows"], case["vocab"]) == (4, 300)
    seconds = case["all_seconds"]
    assert set(seconds) == {"transformers multinomial", "TokenSampler", "transformers top_p=0.95", "TokenSampler top_p=0.95"}
    for name, values in seconds.items():
        assert len(values) == 3 and all(v > 0 for v in values)
        assert case["median_seconds"][name] == statistics.median(values)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    assert case["ratio_to_transformers"] == pytest.approx({
        "TokenSampler": median["TokenSampler"] / median["transformers multinomial"],
        "TokenSampler top_p=0.95": median["TokenSampler top_p=0.95"] / median["transformers top_p=0.95"],
    })
