"""The reward-parity sweep: the paired interval by hand and against numpy on random cases, the t table against
the t density, the seed files it accepts and refuses, and the sweep end to end on the tiny model."""

from __future__ import annotations

import importlib.util
import json
import math
import random

import numpy as np
import pytest

from benchmarks.harness import paired
from benchmarks.reward_parity import main, read_seed


def _t_coverage(t: float, df: int, intervals: int = 20000) -> float:
    """P(|T| <= t) for Student's t with `df` degrees of freedom, by Simpson's rule on its density."""
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    density = lambda x: math.exp(log_c - (df + 1) / 2 * math.log1p(x * x / df))  # noqa: E731
    h = t / intervals
    total = density(0) + density(t) + sum((4 if i % 2 else 2) * density(i * h) for i in range(1, intervals))
    return 2 * total * h / 3


@pytest.mark.parametrize("df", range(1, 31))
def test_every_t_quantile_in_the_table_covers_95_percent(df):
    assert _t_coverage(paired.t_975(df), df) == pytest.approx(0.95, abs=2e-4)


def test_t_quantiles_past_the_table_use_the_last_row_and_zero_df_is_an_error():
    assert paired.t_975(11) == 2.201
    assert paired.t_975(100) == paired.t_975(30) == 2.042  # wider than exact (1.984): conservative
    with pytest.raises(ValueError, match="at least 1 degree of freedom"):
        paired.t_975(0)


def test_window_means_by_hand():
    assert paired.window_mean([0.1, 0.2, 0.3, 0.4]) == pytest.approx(0.25)
    assert paired.window_mean([0.1, 0.2, 0.3, 0.4], last=2) == pytest.approx(0.35)
    assert paired.window_mean([0.1, 0.2, 0.3, 0.4], last=4) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="last 5 steps of a 4-step curve"):
        paired.window_mean([0.1, 0.2, 0.3, 0.4], last=5)
    with pytest.raises(ValueError, match="last 0 steps"):
        paired.window_mean([0.1], last=0)
    with pytest.raises(ValueError, match="empty"):
        paired.window_mean([])


def test_paired_difference_by_hand():
    # differences 2, 3, 1: mean 2, sd 1, se 1/sqrt(3), half-width 4.303/sqrt(3) = 2.48434
    d = paired.paired_difference([3, 5, 4], [1, 2, 3], margin=0.5)
    assert d["differences"] == [2.0, 3.0, 1.0]
    assert (d["n"], d["mean"], d["sd"]) == (3, 2.0, 1.0)
    assert d["se"] == pytest.approx(1 / math.sqrt(3))
    assert d["ci95"] == pytest.approx([2 - 2.484338, 2 + 2.484338], abs=1e-6)
    assert (d["wins"], d["losses"], d["ties"]) == (3, 0, 0)
    assert d["non_inferior"] is True  # -0.484 > -0.5
    assert paired.paired_difference([3, 5, 4], [1, 2, 3], margin=0.4)["non_inferior"] is False  # -0.484 < -0.4


def test_wins_losses_ties_and_an_interval_that_holds_zero_is_not_yet_non_inferiority():
    d = paired.paired_difference([0.20, 0.20, 0.21, 0.19], [0.25, 0.20, 0.26, 0.24], margin=0.02)
    assert (d["wins"], d["losses"], d["ties"]) == (0, 3, 1)
    assert d["mean"] == pytest.approx(-0.0375)
    # differences -0.05, 0, -0.05, -0.05: sd 0.025, half-width 3.182 * 0.0125 = 0.03978
    assert d["ci95"] == pytest.approx([-0.0375 - 0.039775, -0.0375 + 0.039775], abs=1e-9)
    assert d["ci95"][1] > 0 and d["non_inferior"] is False  # no significant loss, and no proof of parity either


def test_paired_difference_equals_numpy_on_random_cases():
    rng = random.Random(1234)
    for _ in range(300):
        n = rng.randint(2, 40)
        a = [rng.uniform(0, 1) for _ in range(n)]
        b = [x + rng.gauss(0, 0.05) for x in a]
        margin = rng.uniform(0, 0.05)
        d = paired.paired_difference(a, b, margin=margin)
        diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
        sd = diff.std(ddof=1)
        half = paired.t_975(n - 1) * sd / np.sqrt(n)
        assert d["mean"] == pytest.approx(diff.mean(), abs=1e-12)
        assert d["sd"] == pytest.approx(sd, rel=1e-10)
        assert d["ci95"] == pytest.approx([diff.mean() - half, diff.mean() + half], abs=1e-12)
        assert d["non_inferior"] == bool(diff.mean() - half > -margin)
        assert d["wins"] + d["losses"] + d["ties"] == n


def test_bad_pairings_are_errors():
    with pytest.raises(ValueError, match="2 values of a but 3 of b"):
        paired.paired_difference([1, 2], [1, 2, 3], margin=0.1)
    with pytest.raises(ValueError, match="margin is >= 0"):
        paired.paired_difference([1, 2], [1, 2], margin=-0.1)
    one = paired.paired_difference([1.0], [0.5], margin=0.1)  # one seed: a mean, no interval, never a verdict
    assert one["mean"] == 0.5 and math.isnan(one["ci95"][0]) and one["non_inferior"] is False


def test_summary_pairs_the_seeds_both_ran_and_averages_the_curves():
    curves = {
        "reinforge": {0: [0.1, 0.3, 0.5], 1: [0.2, 0.2, 0.2], 7: [0.9, 0.9, 0.9]},
        "trl": {0: [0.1, 0.2, 0.3], 1: [0.3, 0.3, 0.3]},
    }
    s = paired.summary(curves, "reinforge", "trl", last=1, margin=0.02)
    assert s["seeds"] == [0, 1]  # seed 7 has no TRL run
    assert s["all_steps"]["per_seed"] == {"reinforge": pytest.approx([0.3, 0.2]), "trl": pytest.approx([0.2, 0.3])}
    assert s["all_steps"]["difference"]["differences"] == pytest.approx([0.1, -0.1])
    assert s["last_1"]["difference"]["differences"] == pytest.approx([0.2, -0.1])
    assert s["mean_curve"]["reinforge"] == pytest.approx([0.15, 0.25, 0.35])
    with pytest.raises(ValueError, match="no seed has curves of both"):
        paired.summary({"reinforge": {0: [0.1]}, "trl": {1: [0.1]}}, "reinforge", "trl", last=1, margin=0.0)


def _seed_file(path, seed, *, steps=3, lr=5e-5, frameworks=("reinforge", "trl"), shift=0.0):
    config = {"model": "demo", "prompts": 16, "generations": 8, "new_tokens": 64, "steps": steps, "warmup": 0,
              "lr": lr, "threads": 2, "max_length": 256, "seed": seed, "pairs": 1}  # fmt: skip
    curve = [0.2 + 0.01 * seed + 0.05 * i for i in range(steps)]
    doc = {
        "config": config,
        "versions": {"reinforge_commit": "abc1234"},
        "frameworks": {name: {"reward_curve": [v + (shift if name == "reinforge" else 0.0) for v in curve]}
                       for name in frameworks},  # fmt: skip
    }
    path.write_text(json.dumps(doc))


def test_a_sweep_of_existing_seed_files_is_summarised_without_running_anything(tmp_path, capsys):
    runs = tmp_path / "runs"
    runs.mkdir()
    for seed in (3, 4, 5):
        _seed_file(runs / f"seed{seed}.json", seed, shift=0.01 * (seed - 4))  # differences -0.01, 0, +0.01
    out = tmp_path / "parity.json"
    argv = ["--runs", str(runs), "--first-seed", "3", "--seeds", "3", "--steps", "3", "--last", "2", "--out", str(out)]
    assert main(argv) == 0
    doc = json.loads(out.read_text())
    assert doc["seeds"] == [3, 4, 5]
    d = doc["all_steps"]["difference"]
    assert d["differences"] == pytest.approx([-0.01, 0.0, 0.01]) and d["mean"] == pytest.approx(0.0, abs=1e-12)
    assert d["ci95"] == pytest.approx([-4.303 * 0.01 / math.sqrt(3), 4.303 * 0.01 / math.sqrt(3)])
    assert d["non_inferior"] is False  # the lower end, -4.303 * 0.01 / sqrt(3) = -0.0248, is below -0.02
    assert doc["versions_per_seed"]["3"] == {"reinforge_commit": "abc1234"}
    assert "mean [95 % CI]" in capsys.readouterr().out


def test_a_seed_file_of_another_experiment_or_without_trl_is_refused(tmp_path):
    _seed_file(tmp_path / "seed0.json", 0, lr=1e-5)
    wanted = {"model": "demo", "prompts": 16, "generations": 8, "new_tokens": 64, "steps": 3, "warmup": 0,
              "lr": 5e-5, "threads": 2, "max_length": 256}  # fmt: skip
    with pytest.raises(SystemExit, match=r"a different experiment: lr 1e-05 \(wanted 5e-05\)"):
        read_seed(tmp_path / "seed0.json", 0, wanted)
    with pytest.raises(SystemExit, match=r"seed 0 \(wanted 1\)"):
        _seed_file(tmp_path / "seed0.json", 0)
        read_seed(tmp_path / "seed0.json", 1, wanted)
    _seed_file(tmp_path / "seed2.json", 2, frameworks=("reinforge",))
    with pytest.raises(SystemExit, match="has no TRL run"):
        read_seed(tmp_path / "seed2.json", 2, wanted)
    with pytest.raises(SystemExit, match="at least 2 seeds"):
        main(["--runs", str(tmp_path), "--seeds", "1"])


@pytest.mark.integration
@pytest.mark.trl
def test_the_sweep_runs_missing_seeds_on_the_tiny_model(tmp_path, monkeypatch):
    """Two seeds of 2 steps each through benchmarks.run; without TRL (scripts/test.sh's main stage; its TRL stage
    has it) the sweep stops at the first seed file with the message that says so."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    runs, out = tmp_path / "runs", tmp_path / "parity.json"
    argv = ["--runs", str(runs), "--model", "tiny", "--seeds", "2", "--steps", "2", "--prompts", "2",
            "--generations", "2", "--new-tokens", "6", "--threads", "1", "--last", "1", "--out", str(out)]  # fmt: skip
    if importlib.util.find_spec("trl") is None:
        with pytest.raises(SystemExit, match="has no TRL run"):
            main(argv)
        assert json.loads((runs / "seed0.json").read_text())["config"]["seed"] == 0
        return
    assert main(argv) == 0
    doc = json.loads(out.read_text())
    assert doc["seeds"] == [0, 1]
    for seed in (0, 1):
        seed_doc = json.loads((runs / f"seed{seed}.json").read_text())
        assert seed_doc["config"]["seed"] == seed
        for name in ("reinforge", "trl"):
            curve = seed_doc["frameworks"][name]["reward_curve"]
            assert len(curve) == 2
            assert doc["all_steps"]["per_seed"][name][seed] == pytest.approx(sum(curve) / 2)
            assert doc["last_1"]["per_seed"][name][seed] == curve[-1]
    # A second call reads the files instead of running again (their mtimes do not move).
    before = [(runs / f"seed{s}.json").stat().st_mtime_ns for s in (0, 1)]
    assert main(argv) == 0
    assert [(runs / f"seed{s}.json").stat().st_mtime_ns for s in (0, 1)] == before
