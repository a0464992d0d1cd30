"""benchmarks.update_parity: the update comparison by hand and against numpy; one step of each framework on the
same rollouts (where TRL is installed), and a deliberate difference on reinforge's side that it must see."""

from __future__ import annotations

import importlib.util
import math
import random
import sys

import numpy as np
import pytest
import torch

from benchmarks.harness import update_compare as uc
from benchmarks.update_parity import compare, main

needs_trl = pytest.mark.skipif(
    importlib.util.find_spec("trl") is None,
    reason="TRL (the bench extra, scripts/install_bench.sh) is not installed here; scripts/test.sh runs these "
    "in its TRL stage, where it is",
)


def _w(**tensors):
    return {name: torch.tensor(values, dtype=torch.float32) for name, values in tensors.items()}


def test_update_difference_by_hand():
    before = _w(w=[0.0, 0.0], b=[1.0])
    a = _w(w=[1.0, 0.0], b=[1.0])  # A moved w[0] by 1, b not at all
    b = _w(w=[1.0, 1.0], b=[1.0])  # B moved w[0] and w[1] by 1
    d = uc.update_difference(before, a, before, b)
    assert d["relative"] == pytest.approx(1 / math.sqrt(2))  # ||(0, -1)|| / ||(1, 1)||
    assert d["cosine"] == pytest.approx(1 / math.sqrt(2))  # (1*1 + 0*1) / (1 * sqrt 2)
    assert d["max_abs"] == 1.0
    assert (d["norm_a"], d["norm_b"]) == (pytest.approx(1.0), pytest.approx(math.sqrt(2)))
    assert d["worst_tensor"] == "w" and d["worst_relative"] == pytest.approx(1 / math.sqrt(2))
    assert d["tensors"] == 2


def test_each_side_is_measured_from_its_own_starting_weights():
    a0, a1 = _w(w=[1.0, 1.0]), _w(w=[1.5, 1.0])  # update (0.5, 0)
    b0, b1 = _w(w=[2.0, 2.0]), _w(w=[2.5, 2.0])  # the same update from elsewhere
    d = uc.update_difference(a0, a1, b0, b1)
    assert d["relative"] == 0.0 and d["cosine"] == pytest.approx(1.0) and d["max_abs"] == 0.0


def test_update_difference_equals_numpy_float64_on_random_cases():
    rng = random.Random(7)
    for _ in range(300):
        names = [f"t{i}" for i in range(rng.randint(1, 4))]
        shapes = {n: tuple(rng.randint(1, 5) for _ in range(rng.randint(1, 3))) for n in names}
        before = {n: torch.randn(shapes[n], dtype=torch.float64).float() for n in names}
        scale = 10 ** rng.uniform(-6, 0)
        after_b = {n: before[n] + scale * torch.randn(shapes[n]).float() for n in names}
        noise = 10 ** rng.uniform(-4, 0)
        after_a = {n: after_b[n] + scale * noise * torch.randn(shapes[n]).float() for n in names}
        got = uc.update_difference(before, after_a, before, after_b)
        da = np.concatenate([(after_a[n].double() - before[n].double()).numpy().ravel() for n in names])
        db = np.concatenate([(after_b[n].double() - before[n].double()).numpy().ravel() for n in names])
        assert got["relative"] == pytest.approx(np.linalg.norm(da - db) / np.linalg.norm(db), rel=1e-9)
        assert got["cosine"] == pytest.approx(da @ db / (np.linalg.norm(da) * np.linalg.norm(db)), rel=1e-9)
        assert got["max_abs"] == pytest.approx(np.abs(da - db).max(), rel=1e-12)
        per_tensor = {
            n: np.linalg.norm((after_a[n].double() - after_b[n].double()).numpy())
            / np.linalg.norm((after_b[n].double() - before[n].double()).numpy())
            for n in names
        }
        assert got["worst_relative"] == pytest.approx(max(per_tensor.values()), rel=1e-9)
        assert per_tensor[got["worst_tensor"]] == pytest.approx(max(per_tensor.values()), rel=1e-9)


def test_zero_updates_and_names_held_by_one_side_only():
    same = _w(w=[1.0])
    d = uc.update_difference(same, same, same, same)
    assert d["relative"] == 0.0 and math.isnan(d["cosine"])
    assert uc.update_difference(same, _w(w=[2.0]), same, same)["relative"] == math.inf  # B did not move, A did
    # A tensor only one side holds (a tied head saved under a second name) is left out, not an error.
    d = uc.update_difference(_w(w=[0.0], head=[0.0]), _w(w=[1.0], head=[5.0]), _w(w=[0.0]), _w(w=[1.0]))
    assert d["tensors"] == 1 and d["relative"] == 0.0


def test_shapes_that_differ_or_no_shared_names_are_errors():
    with pytest.raises(ValueError, match=r"w: shape \(2,\) vs \(1,\)"):
        uc.update_difference(_w(w=[0.0, 0.0]), _w(w=[0.0, 0.0]), _w(w=[0.0]), _w(w=[0.0]))
    with pytest.raises(ValueError, match="share no tensor names"):
        uc.update_difference(_w(a=[0.0]), _w(a=[0.0]), _w(b=[0.0]), _w(b=[0.0]))


def test_replayed_prompts_must_be_the_sampled_ones():
    uc.check_same_prompts([[1, 2, 3], [4]], [[1, 2, 3], [4]], step=1)
    with pytest.raises(uc.ReplayMismatch, match="step 2: 1 prompts to replay, but 2 were sampled"):
        uc.check_same_prompts([[1], [2]], [[1]], step=2)
    with pytest.raises(uc.ReplayMismatch, match="step 3, row 1: .*3 tokens here, 3 when sampled; first difference at token 2"):
        uc.check_same_prompts([[1], [5, 6, 7]], [[1], [5, 6, 8]], step=3)
    with pytest.raises(uc.ReplayMismatch, match="first difference at token 2"):
        uc.check_same_prompts([[5, 6]], [[5, 6, 7]], step=1)  # one is the other's prefix


def test_scalar_differences_by_hand():
    assert uc.max_abs_difference([1.0, 2.0, 3.0], [1.0, 2.5, 2.0]) == 1.0
    assert uc.max_abs_difference([], []) == 0.0
    with pytest.raises(ValueError, match="lengths differ: 2 vs 1"):
        uc.max_abs_difference([1.0, 2.0], [1.0])
    assert uc.relative_difference(1.1, 1.0) == pytest.approx(0.1)
    assert uc.relative_difference(-2.0, -4.0) == pytest.approx(0.5)
    assert uc.relative_difference(0.0, 0.0) == 0.0 and uc.relative_difference(1.0, 0.0) == math.inf


def test_compare_reports_each_step_from_its_own_previous_weights():
    before = _w(w=[0.0, 0.0])
    ours = [
        {"rewards": [1.0, 0.0], "advantages": [0.7, -0.7], "grad_norm": 2.0, "loss": 0.0, "weights": _w(w=[1.0, 0.0])},
        {"rewards": [0.0, 0.0], "advantages": [0.0, 0.0], "grad_norm": 1.0, "loss": 0.0, "weights": _w(w=[2.0, 0.0])},
    ]
    theirs = [
        {"rewards": [1.0, 0.0], "advantages": [0.6, -0.6], "grad_norm": 2.5, "loss": 0.1, "weights": _w(w=[1.0, 0.0])},
        {"rewards": [0.0, 0.0], "advantages": [0.0, 0.0], "grad_norm": 1.0, "loss": 0.0, "weights": _w(w=[1.0, 1.0])},
    ]
    first, second = compare(before, ours, theirs)
    assert first["advantage_max_abs_difference"] == pytest.approx(0.1)
    assert first["grad_norm_relative_difference"] == pytest.approx(0.2)  # |2 - 2.5| / 2.5
    assert first["reward_mean"] == 0.5 and first["step_update"]["relative"] == 0.0
    # Step 2: ours moved (1, 0), theirs (0, 1) from their own step-1 weights.
    assert second["step_update"]["relative"] == pytest.approx(math.sqrt(2)) and second["step_update"]["cosine"] == 0.0
    # Cumulative from the start: ours (2, 0), theirs (1, 1).
    assert second["cumulative_update"]["relative"] == pytest.approx(math.sqrt(2) / math.sqrt(2))


def test_without_trl_it_says_how_to_get_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "trl", None)  # `import trl` raises ImportError
    assert main(["--model", "tiny"]) == 2
    err = capsys.readouterr().err
    assert "trl is not installed in this Python" in err and "scripts/install_bench.sh" in err
    assert "Traceback" not in err


# ---------------------------------------------------------------------- both frameworks, the tiny model
def digit_share(prompt, response, **metadata):
    """A reward the untrained tiny model's responses vary on (the math reward is 0 for all of them)."""
    return sum(ch.isdigit() for ch in response) / max(len(response), 1)


def _tiny_parity(tmp_path, **kwargs):
    from benchmarks.harness.workload import prepare
    from benchmarks.update_parity import measure
    from reinforge.environments.function import FunctionEnvironment
    from reinforge.models.tiny_model import build_model

    torch.set_num_threads(1)
    workload = prepare(
        tmp_path / "workload", build_model(size="tiny"), prompts_per_step=2, generations=4, new_tokens=8, steps=2,
        lr=1e-3, seed=0, threads=1, max_total_sequence_length=128,
    )  # fmt: skip
    return measure(workload, tmp_path, environment=lambda: FunctionEnvironment(digit_share), **kwargs)


@pytest.mark.integration
@pytest.mark.trl
@needs_trl
def test_one_step_of_each_framework_on_the_same_rollouts_is_the_same_step(tmp_path):
    rows = _tiny_parity(tmp_path, advantage_eps=1e-4)  # TRL's epsilon: nothing left that differs by design
    for row in rows:
        assert row["reward_max_abs_difference"] == 0.0
        assert row["advantage_max_abs"] > 0.5  # the rewards vary, so there is an update to compare
        assert row["advantage_max_abs_difference"] < 1e-6
        assert row["grad_norm_relative_difference"] < 5e-5  # measured 7e-6: float32 rounding
        assert row["step_update"]["relative"] < 1e-3  # measured 2e-5 and 4e-6
        assert row["step_update"]["cosine"] > 0.9999


@pytest.mark.integration
@pytest.mark.trl
@needs_trl
def test_a_real_difference_in_the_update_is_seen(tmp_path):
    """Advantages not divided by the group's std on reinforge's side: the comparison must say so."""
    rows = _tiny_parity(tmp_path, advantage_eps=1e-4, overrides={"grpo.normalize_rewards": False})
    assert rows[0]["advantage_max_abs_difference"] > 0.1
    assert rows[0]["grad_norm_relative_difference"] > 0.1
