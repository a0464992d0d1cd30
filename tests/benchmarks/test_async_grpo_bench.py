"""benchmarks/async_grpo.py without running a model: the age-0 comparison finds the first differing metric and
ignores what is not trained, the overlap figures by hand, the overrides of each mode, and the vllm refusal."""

from __future__ import annotations

import pytest

from benchmarks import async_grpo


def _row(step: int, **metrics: float) -> dict[str, float]:
    return {"step": step, **{k.replace("__", "/"): v for k, v in metrics.items()}}


def test_age0_comparison_ignores_timings_and_names_the_first_difference():
    sync = [_row(1, train__loss=0.5, timing__total=3.0), _row(2, train__loss=0.25, val__accuracy=0.5, timing__total=4.0)]
    same = [_row(1, train__loss=0.5, timing__total=9.0, async__age_max=0.0), _row(2, train__loss=0.25, val__accuracy=0.5)]
    assert async_grpo.first_difference(sync, same) is None
    other = [_row(1, train__loss=0.5), _row(2, train__loss=0.25, val__accuracy=0.5000001)]
    assert async_grpo.first_difference(sync, other) == "step 2: val/accuracy sync 0.5 async 0.5000001"
    missing = [_row(1, train__loss=0.5), _row(2, train__loss=0.25)]
    assert "only in sync ['val/accuracy']" in async_grpo.first_difference(sync, missing)
    assert async_grpo.first_difference(sync, sync[:1]).startswith("logged steps [1, 2] vs [1]")


def test_age0_verdict_is_inconclusive_when_two_synchronous_runs_differ_already():
    sync = [_row(1, train__loss=0.5)]
    other = [_row(1, train__loss=0.5000001)]
    assert async_grpo.age0_verdict(sync, sync, sync)["verdict"] == "equal"
    assert async_grpo.age0_verdict(sync, sync, other) == {
        "verdict": "differs", "age0": "step 1: train/loss sync 0.5 async 0.5000001", "control": "equal, 1 values in 1 rows"}
    assert async_grpo.age0_verdict(sync, other, other)["verdict"] == "inconclusive"
    assert async_grpo.age0_verdict(sync, other, sync)["verdict"] == "equal"


def test_overlap_figures_by_hand():
    rows = [
        _row(1, timing__total=4.0, async__producer_busy_s=2.0, timing__generation=9.0, async__age_max=0.0,
             timing__generation_idle=1.0, timing__training_idle=3.0),
        _row(2, timing__total=2.0, async__producer_busy_s=1.0, async__age_max=1.0, timing__generation_idle=0.0,
             timing__training_idle=1.0, async__regenerated_groups=2.0),
        _row(3, timing__total=6.0, async__producer_busy_s=3.0, async__age_max=1.0),
    ]  # fmt: skip
    o = async_grpo.overlap(rows, asynchronous=True)
    assert o["loop_wall_s"] == 12.0 and o["generator_busy_share"] == 0.5 and o["median_step_s"] == 4.0
    assert o["mean_generation_idle"] == 0.5 and o["mean_training_idle"] == 2.0
    assert o["age_max_counts"] == {"0": 1, "1": 2} and o["regenerated_groups"] == 2.0
    assert async_grpo.overlap(rows, asynchronous=False)["generator_busy_share"] == 0.75  # timing/generation: 9 / 12


def test_each_mode_runs_the_recipe_with_its_own_overrides(tmp_path):
    args = async_grpo.parse_args(["--runs", str(tmp_path), "--smoke"])
    assert (args.seeds, args.steps, args.last) == (1, 3, 3)
    sync = async_grpo.overrides(args, "sync", 3, tmp_path / "m", tmp_path / "r")
    age1 = async_grpo.overrides(args, "async", 3, tmp_path / "m", tmp_path / "r")
    assert "grpo.seed=3" in sync and "grpo.val_period=0" in sync and "checkpointing.enabled=false" in sync
    assert age1[: len(sync)] == sync
    assert age1[len(sync):] == [
        "grpo.async_grpo.enabled=true", "grpo.async_grpo.max_trajectory_age_steps=1",
        "loss_fn.use_importance_sampling_correction=true", "loss_fn.truncated_importance_sampling_type=tis",
        "loss_fn.truncated_importance_sampling_ratio_max=2.0",
    ]  # fmt: skip
    check = async_grpo.parse_args(["--runs", str(tmp_path), "--check-age0", "--engine", "vllm"])
    age0 = async_grpo.overrides(check, "age0", 0, tmp_path / "m", tmp_path / "r")
    assert "grpo.val_period=0" not in age0  # the recipe's validation is compared too
    assert "policy.generation.backend_cfg={async_engine: true}" in age0 and age0[-1] == "grpo.async_grpo.max_trajectory_age_steps=0"


def test_vllm_engine_without_vllm_exits_with_one_line(monkeypatch, tmp_path):
    try:
        import vllm  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("vllm is importable here")
    monkeypatch.setattr(async_grpo, "REPO", tmp_path)  # no .venv-vllm there
    with pytest.raises(SystemExit, match="vllm is not importable"):
        async_grpo.engine_python("vllm")


def test_a_completed_run_is_read_not_run_again_and_other_settings_are_refused(monkeypatch, tmp_path):
    args = async_grpo.parse_args(["--runs", str(tmp_path), "--smoke"])
    folder = tmp_path / "hf" / "train" / "async_seed0"
    (folder / "logs").mkdir(parents=True)
    (folder / "logs" / "metrics.jsonl").write_text('{"step": 1, "train/reward_mean": 0.25}\n')
    settings = {"overrides": async_grpo.overrides(args, "async", 0, tmp_path / "m", folder),
                "recipe": "examples/configs/grpo-arith-cpu.yaml", "threads": None}  # fmt: skip
    (folder / "done.json").write_text(async_grpo.json.dumps({"settings": settings}))
    monkeypatch.setattr(async_grpo.subprocess, "run", lambda *a, **k: pytest.fail("ran a completed run again"))
    assert async_grpo.run_one(args, "python", "async", 0, tmp_path / "m") == [{"step": 1, "train/reward_mean": 0.25}]
    longer = async_grpo.parse_args(["--runs", str(tmp_path), "--seeds", "1", "--steps", "4", "--last", "3"])
    with pytest.raises(SystemExit, match="was run with other settings"):
        async_grpo.run_one(longer, "python", "async", 0, tmp_path / "m")
