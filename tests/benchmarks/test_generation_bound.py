"""benchmarks/generation_bound.py and benchmarks/roofline.py: FLOPs, bytes and bounds by hand; the script end to end."""

from __future__ import annotations

import json

import pytest

from benchmarks import roofline
from benchmarks.generation_bound import forward_intervals, main

# 2 layers, hidden 8, 2 query heads and 1 KV head of 4, MLP 16, vocabulary 32. Per layer: q 8x8 = 64, k 8x4 = 32,
# v 32, o 64, MLP 3 x 8 x 16 = 384: 576; decoder 1152; output layer 32 x 8 = 256; matmul weights 1408.
HAND = {"num_hidden_layers": 2, "hidden_size": 8, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 4,
        "intermediate_size": 16, "vocab_size": 32}  # fmt: skip
SMOLLM2 = {"num_hidden_layers": 30, "hidden_size": 576, "num_attention_heads": 9, "num_key_value_heads": 3, "head_dim": 64,
           "intermediate_size": 1536, "vocab_size": 49152}  # fmt: skip


def test_weights_of_a_hand_worked_config():
    shape = roofline.DecoderShape.from_config(HAND)
    assert (shape.decoder_weights, shape.head_weights, shape.matmul_weights) == (1152, 256, 1408)


def test_smollm2_matmul_weights_plus_its_norms_are_its_parameter_count_and_the_issues_figure():
    shape = roofline.DecoderShape.from_config(SMOLLM2)
    norms = (2 * 30 + 1) * 576  # two RMSNorms per layer and the final one; the output layer is the tied embedding
    assert shape.matmul_weights + norms == 134_515_008  # SmolLM2-135M's parameter count
    # The issue's figure: 32 rows x 64 tokens at 2 FLOPs per weight per token, about 0.55 TFLOP.
    assert 2 * shape.matmul_weights * 32 * 64 == pytest.approx(0.5508e12, rel=1e-3)


def test_decode_step_flops_and_bytes_by_hand():
    step = roofline.decode_step(roofline.DecoderShape.from_config(HAND), rows=3, context=5)
    assert step["matmul_flops"] == 2 * 1408 * 3  # 8448
    assert step["attention_flops"] == 4 * 2 * 2 * 4 * 5 * 3  # layers x heads x head_dim x context x rows: 960
    assert step["flops"] == 9408
    assert step["weight_bytes"] == 1408 * 4  # 5632
    assert step["kv_bytes"] == 2 * 2 * 1 * 4 * 5 * 3 * 4  # k and v, layers, kv heads, head_dim, context, rows, fp32: 960
    assert step["bytes"] == 6592


def test_prefill_counts_every_prompt_position_the_head_once_per_row_and_causal_attention():
    first = roofline.prefill(roofline.DecoderShape.from_config(HAND), [2, 3])
    assert first["matmul_flops"] == 2 * (1152 * 5 + 256 * 2)  # 12544
    assert first["attention_flops"] == 4 * 2 * 2 * 4 * (3 + 6)  # 1+2 and 1+2+3 positions attended: 576
    assert first["bytes"] == 1408 * 4 + 2 * 2 * 1 * 4 * 5 * 4  # weights + the KV written: 5952


def test_the_bound_is_the_larger_of_compute_and_memory_time():
    assert roofline.bound_seconds(10.0, 5.0, peak_flops=2.0, bandwidth=1.0) == 5.0  # memory binds
    assert roofline.bound_seconds(10.0, 5.0, peak_flops=1.0, bandwidth=1.0) == 10.0  # compute binds
    with pytest.raises(ValueError):
        roofline.bound_seconds(1.0, 1.0, peak_flops=0.0, bandwidth=1.0)


def test_the_workload_is_prefill_then_new_tokens_minus_one_decode_steps():
    shape = roofline.DecoderShape.from_config(HAND)
    work = roofline.workload(shape, [5, 5, 5], new_tokens=3, peak_flops=1000.0, bandwidth=1000.0)
    steps = [roofline.decode_step(shape, 3, context) for context in (6, 7)]  # steps 1 and 2 attend to 5 + s
    assert work["decode"]["steps"] == 2
    assert work["decode"]["flops"] == sum(s["flops"] for s in steps)
    assert work["flops"] == work["prefill"]["flops"] + work["decode"]["flops"]
    step_bounds = sum(max(s["flops"], s["bytes"]) / 1000.0 for s in steps)
    assert work["bound_seconds"] == pytest.approx(max(work["prefill"]["flops"], work["prefill"]["bytes"]) / 1000.0 + step_bounds)


def test_forward_stamps_split_into_prefill_and_decode_steps_per_chunk():
    # Two chunks of one generate call: prefill at 0 and 10; the gap 2.5 -> 10 is wrap-up and the next chunk's setup.
    stamps = [(0.0, True), (1.0, False), (1.5, False), (2.5, False), (10.0, True), (11.0, False), (11.25, False)]
    prefill, decode = forward_intervals(stamps)
    assert prefill == 2.0
    assert decode == [0.5, 1.0, 0.25]


def test_the_script_runs_end_to_end_on_the_tiny_model(tmp_path):
    out = tmp_path / "bound.json"
    assert main(["--smoke", "--engines", "hf", "--profile", "--threads", "1", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["model"] == "tiny" and doc["settings"]["rows"] == 2 and doc["settings"]["new_tokens"] == 4
    machine = doc["machine"]
    assert machine["matmul_peak_gflops"] > 0 and machine["bandwidth_gbs"] > 0 and "avx2" in machine
    hf = doc["engines"]["hf"]
    assert len(hf["calls"]) == 1 and hf["calls"][0]["forwards"] == 4  # prefill + 3 decode forwards: exactly 4 tokens
    assert hf["decode_steps_measured"] == 2 and hf["decode_step_median_s"] > 0
    bound = hf["bound"]["decode_step"]
    assert bound["measured_over_bound"] == pytest.approx(bound["measured_s"] / bound["bound_s"])
    peak, bandwidth = machine["matmul_peak_gflops"] * 1e9, machine["bandwidth_gbs"] * 1e9
    assert bound["bound_s"] == pytest.approx(max(bound["flops"] / peak, bound["bytes"] / bandwidth))
    rows = hf["profile"]["operators"]
    assert rows and {"name", "calls_per_step", "self_ms_per_step", "share"} <= set(rows[0])
    assert sum(r["share"] for r in rows) <= 1.0 + 1e-9
    assert doc["work"]["decode"]["steps"] == 3 and doc["versions"]["torch"]
