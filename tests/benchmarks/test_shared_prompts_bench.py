"""benchmarks/shared_prompts.py runs end to end on the tiny model: both variants do the same work (equal losses)."""

from __future__ import annotations

import json

from benchmarks import shared_prompts


def test_the_shared_prompt_benchmark_runs_and_compares_equal_work(tmp_path):
    out = tmp_path / "shared.json"
    result = shared_prompts.main([
        "--prompts", "2", "--generations", "4", "--prompt-tokens", "20", "--response-tokens", "2-8",
        "--micro-batch", "4", "--repeats", "1", "--threads", "1", "--out", str(out),
    ])  # fmt: skip
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["rows"] == 8
    assert result["positions"]["shared"] < result["positions"]["padded"]  # 2 prompts of ~20 tokens run once, not 4 times
    assert result["max_loss_difference"] <= 1e-5
    assert len(result["seconds"]["shared"]) == len(result["seconds"]["padded"]) == 1
    medians = {name: sorted(values)[0] for name, values in result["seconds"].items()}  # one measured step each
    assert result["median_seconds"] == medians
    assert result["ratio_shared_to_padded"] == medians["shared"] / medians["padded"]
