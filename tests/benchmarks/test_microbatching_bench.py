"""benchmarks/microbatching.py runs end to end: every plan does the same work, and what it reports is what it timed."""

from __future__ import annotations

import json

import pytest

from benchmarks import microbatching


def test_the_plans_benchmark_runs_and_compares_equal_work(tmp_path, monkeypatch):
    from reinforge.models import tiny_model

    small = tiny_model.build_model
    monkeypatch.setattr(tiny_model, "build_model", lambda size="small", **kw: small(tmp_path / "model", size="tiny"))
    out = tmp_path / "plans.json"
    result = microbatching.main(["--rows", "6", "--max-response", "24", "--micro-batch", "2", "--repeats", "1",
                                 "--threads", "1", "--out", str(out)])  # fmt: skip
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert set(result["seconds"]) == {"fixed", "sorted", "token_budget", "packed"}
    assert result["max_loss_difference"] <= 1e-5
    # Packing computes exactly the rows' tokens; fixed pairs pad each pair to its longer row.
    assert result["positions"]["packed"] == result["tokens"] <= result["positions"]["fixed"] <= result["padded_positions"]
    for name, values in result["seconds"].items():
        assert len(values) == 1 and result["median_seconds"][name] == values[0]
        assert result["tokens_per_second"][name] == pytest.approx(result["tokens"] / values[0])
        assert result["ratio_to_fixed"][name] == pytest.approx(result["tokens_per_second"][name] / result["tokens_per_second"]["fixed"])
