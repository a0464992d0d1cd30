"""The advantage estimators chosen by `grpo.advantage_estimator`: each built-in against hand-worked values and
an independent exact reimplementation, the default's numbers unchanged, and selection by name (YAML, Python,
a third-party package's entry point)."""

from __future__ import annotations

import importlib.metadata
import math
import statistics
import sys
import types
from fractions import Fraction

import attrs
import numpy as np
import pytest
import torch

import reinforge as rf
from reinforge.algorithms.advantage_estimators import (
    DrGRPOEstimator,
    GRPOEstimator,
    ReinforcePPConfig,
    ReinforcePPEstimator,
    RLOOEstimator,
    estimate_advantages,
    make_advantage_estimator,
)
from reinforge.algorithms.advantages import grpo_advantages
from reinforge.algorithms.grpo import GRPO
from reinforge.algorithms.grpo_config import GRPOConfig
from reinforge.core.config import structure, to_dict
from reinforge.core.errors import ConfigError, PluginError, ReinforgeError
from reinforge.core.hookspecs import hookimpl
from reinforge.core.registry import Registry, RegistrySettings
from tests.integration.grpo_helpers import CPU_RECIPE

BUILT_INS = ["dr_grpo", "grpo", "reinforce_pp", "rloo"]
NO_ENTRY_POINTS = RegistrySettings(load_entry_points=False)
EPS = 1e-6


# ----------------------------------------------------------------------------- exact references
# Written from the definitions, one group at a time, with `statistics` (exact rational arithmetic inside),
# so equal rewards give a spread of exactly 0 without borrowing the library's numerics.
def reference_grpo(rewards: np.ndarray, group: int, leave_one_out: bool = True, normalize: bool = True) -> np.ndarray:
    """A_i = r_i - mean(C_i), over (Bessel std(C_i) + eps) when normalising and std(C_i) > 0, where C_i is
    the sample's group without it (leave-one-out) or with it; a group of one gets 0."""
    out = np.zeros_like(rewards)
    if group == 1:
        return out
    for start in range(0, len(rewards), group):
        values = [Fraction(float(x)) for x in rewards[start : start + group]]
        for i, r in enumerate(values):
            compared = values[:i] + values[i + 1 :] if leave_one_out else values
            advantage = float(r - sum(compared) / len(compared))
            spread = float(statistics.stdev(compared)) if len(compared) > 1 else 0.0
            out[start + i] = advantage / (spread + EPS) if normalize and spread > 0 else advantage
    return out


def reference_rloo(rewards: np.ndarray, group: int) -> np.ndarray:
    return reference_grpo(rewards, group, leave_one_out=True, normalize=False)


def reference_dr_grpo(rewards: np.ndarray, group: int) -> np.ndarray:
    return reference_grpo(rewards, group, leave_one_out=False, normalize=False)


def reference_reinforce_pp(rewards: np.ndarray, group: int, minus_baseline: bool = True) -> np.ndarray:
    exact = [Fraction(float(x)) for x in rewards]
    if minus_baseline:
        centred = []
        for start in range(0, len(exact), group):
            values = exact[start : start + group]
            mean = sum(values) / len(values)
            centred += [v - mean for v in values]
    else:
        centred = exact
    mean = sum(centred) / len(centred)
    deviations = [c - mean for c in centred]
    std = math.sqrt(sum(d * d for d in deviations) / len(deviations))
    return np.array([float(d) / (std + EPS) for d in deviations])


def random_rewards(rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Rewards of K groups of G: ties, all-equal groups, binary, continuous, large offsets; G = 1 sometimes."""
    group = 1 if rng.random() < 0.05 else int(rng.integers(2, 17))
    groups = int(rng.integers(1, 9))
    kind = rng.choice(["binary", "ints", "normal", "offset"])
    if kind == "binary":
        rewards = rng.integers(0, 2, size=group * groups).astype(np.float64)
    elif kind == "ints":
        rewards = rng.integers(-2, 3, size=group * groups).astype(np.float64)
    elif kind == "normal":
        rewards = rng.normal(size=group * groups) * rng.choice([0.01, 1.0, 100.0])
    else:
        rewards = 1e6 + rng.integers(0, 3, size=group * groups).astype(np.float64) * 0.5
    for g in range(groups):  # some groups all equal: no signal
        if rng.random() < 0.2:
            rewards[g * group : (g + 1) * group] = rewards[g * group]
    return rewards, group


ESTIMATORS = {
    "grpo": (GRPOEstimator(), reference_grpo),
    "rloo": (RLOOEstimator(), reference_rloo),
    "dr_grpo": (DrGRPOEstimator(), reference_dr_grpo),
    "reinforce_pp": (ReinforcePPEstimator(), reference_reinforce_pp),
}


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_each_built_in_matches_an_exact_reimplementation_on_random_groups(name: str) -> None:
    estimator, reference = ESTIMATORS[name]
    rng = np.random.default_rng(26)
    sizes = set()
    for case in range(320):
        rewards, group = random_rewards(rng)
        sizes.add(group)
        got = estimator(torch.tensor(rewards, dtype=torch.float64), group, config=GRPOConfig()).numpy()
        np.testing.assert_allclose(got, reference(rewards, group), rtol=1e-9, atol=1e-9, err_msg=f"case {case}: {rewards}, G={group}")
    assert {1, 2, 16} <= sizes


def test_grpo_estimator_follows_the_shared_switches_on_random_groups() -> None:
    rng = np.random.default_rng(3)
    for case in range(300):
        rewards, group = random_rewards(rng)
        leave_one_out, normalize = bool(rng.random() < 0.5), bool(rng.random() < 0.5)
        config = GRPOConfig(use_leave_one_out_baseline=leave_one_out, normalize_rewards=normalize)
        got = GRPOEstimator()(torch.tensor(rewards, dtype=torch.float64), group, config=config).numpy()
        expected = reference_grpo(rewards, group, leave_one_out=leave_one_out, normalize=normalize)
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9, err_msg=f"case {case}")


def test_reinforce_pp_without_minus_baseline_on_random_groups() -> None:
    rng = np.random.default_rng(5)
    estimator = ReinforcePPEstimator(ReinforcePPConfig(minus_baseline=False))
    for case in range(300):
        rewards, group = random_rewards(rng)
        got = estimator(torch.tensor(rewards, dtype=torch.float64), group).numpy()
        expected = reference_reinforce_pp(rewards, group, minus_baseline=False)
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9, err_msg=f"case {case}")


# ----------------------------------------------------------------------------- hand-worked values
# Two prompts, G = 4: rewards [1, 0, 0, 0 | 1, 1, 0, 0].
HAND = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0], dtype=torch.float64)
R3 = 1 / math.sqrt(3)  # Bessel std of {1, 0, 0} and of {1, 1, 0}: sqrt((4/9 + 1/9 + 1/9) / 2) = 1/sqrt(3)


def test_rloo_by_hand() -> None:
    # prompt 1: 1 - mean(0,0,0) = 1; 0 - mean(1,0,0) = -1/3.  prompt 2: 1 - mean(1,0,0) = 2/3; 0 - mean(1,1,0) = -2/3
    expected = [1, -1 / 3, -1 / 3, -1 / 3, 2 / 3, 2 / 3, -2 / 3, -2 / 3]
    torch.testing.assert_close(RLOOEstimator()(HAND, 4), torch.tensor(expected, dtype=torch.float64), atol=1e-12, rtol=0)


def test_dr_grpo_by_hand() -> None:
    # r - group mean: means 1/4 and 1/2
    expected = [0.75, -0.25, -0.25, -0.25, 0.5, 0.5, -0.5, -0.5]
    assert DrGRPOEstimator()(HAND, 4).tolist() == expected


def test_grpo_by_hand() -> None:
    # leave-one-out: the 1 of prompt 1 is compared with (0, 0, 0): std 0, so A = 1 unscaled; each 0 with (1, 0, 0):
    # (0 - 1/3) / (1/sqrt 3 + eps).  Prompt 2: (1 - 1/3) / (1/sqrt 3 + eps) and (0 - 2/3) / (1/sqrt 3 + eps).
    s = R3 + EPS
    expected = [1, -1 / 3 / s, -1 / 3 / s, -1 / 3 / s, 2 / 3 / s, 2 / 3 / s, -2 / 3 / s, -2 / 3 / s]  # 1, -0.57735, ..., 1.1547
    torch.testing.assert_close(GRPOEstimator()(HAND, 4, config=GRPOConfig()), torch.tensor(expected, dtype=torch.float64))
    # group mean and Bessel std over all four: prompt 1 mean 1/4, std sqrt(0.75 / 3) = 1/2 -> 0.75 / 0.5 = 1.5, -0.5;
    # prompt 2 mean 1/2, std sqrt(1 / 3) -> +-0.5 * sqrt 3 = +-0.866025
    whole = GRPOConfig(use_leave_one_out_baseline=False)
    s1, s2 = 0.5 + EPS, R3 + EPS
    expected = [0.75 / s1, -0.25 / s1, -0.25 / s1, -0.25 / s1, 0.5 / s2, 0.5 / s2, -0.5 / s2, -0.5 / s2]
    torch.testing.assert_close(GRPOEstimator()(HAND, 4, config=whole), torch.tensor(expected, dtype=torch.float64))
    # without normalisation the grpo estimator is rloo
    assert torch.equal(GRPOEstimator()(HAND, 4, config=GRPOConfig(normalize_rewards=False)), RLOOEstimator()(HAND, 4))


def test_reinforce_pp_by_hand() -> None:
    # centred [.75, -.25, -.25, -.25, .5, .5, -.5, -.5] (mean 0); population std sqrt((.5625 + 3 * .0625 + 4 * .25) / 8)
    # = sqrt(1.75 / 8) = 0.4677072
    std = math.sqrt(1.75 / 8)
    expected = torch.tensor([0.75, -0.25, -0.25, -0.25, 0.5, 0.5, -0.5, -0.5], dtype=torch.float64) / (std + EPS)
    torch.testing.assert_close(ReinforcePPEstimator()(HAND, 4), expected, atol=1e-12, rtol=0)
    # without the group baseline: batch mean 3/8, deviations .625 (x3) and -.375 (x5),
    # std sqrt((3 * .390625 + 5 * .140625) / 8) = sqrt(1.875 / 8) = 0.4841229 -> .625 / (0.4841229 + 1e-6) = 1.2909918
    plain = ReinforcePPEstimator(ReinforcePPConfig(minus_baseline=False))(HAND, 4)
    std = math.sqrt(1.875 / 8)
    expected = torch.tensor([0.625, -0.375, -0.375, -0.375, 0.625, 0.625, -0.375, -0.375], dtype=torch.float64) / (std + EPS)
    torch.testing.assert_close(plain, expected, atol=1e-12, rtol=0)
    assert plain[0].item() == pytest.approx(1.2909918, abs=1e-6)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_no_signal_means_exactly_zero_and_dtype_is_kept(name: str) -> None:
    estimator, _ = ESTIMATORS[name]
    for rewards in (torch.full((8,), 0.1), torch.full((8,), 1e6 + 0.1)):
        assert estimator(rewards, 4, config=GRPOConfig()).tolist() == [0.0] * 8  # all equal: exactly 0
    single = estimator(torch.tensor([0.3, 1.0, -2.0]), 1, config=GRPOConfig())  # groups of one: nothing to compare
    assert single.tolist() == [0.0, 0.0, 0.0]
    out = estimator(torch.tensor([1.0, 0.0, 0.5, 0.5], dtype=torch.float32), 2, config=GRPOConfig())
    assert out.dtype == torch.float32 and out.shape == (4,)


# ----------------------------------------------------------------------------- GRPO's use of them
def test_default_gives_exactly_the_numbers_of_before() -> None:
    """`grpo` (the default) through GRPO.advantages is bit-for-bit the previous direct call, clamps included."""
    rng = np.random.default_rng(11)
    for case in range(300):
        rewards, group = random_rewards(rng)
        r = torch.tensor(rewards, dtype=torch.float32)
        low = float(rng.choice([-1.5, -0.3])) if rng.random() < 0.3 else None
        high = float(rng.choice([0.4, 2.0])) if rng.random() < 0.3 else None
        config = GRPOConfig(
            use_leave_one_out_baseline=bool(rng.random() < 0.7),
            normalize_rewards=bool(rng.random() < 0.7),
            advantage_clip_low=low,
            advantage_clip_high=high,
        )
        before = grpo_advantages(
            r, group, leave_one_out=config.use_leave_one_out_baseline, normalize=config.normalize_rewards,
            clip_low=low, clip_high=high,
        )
        assert torch.equal(GRPO(config).advantages(r, group), before), f"case {case}"


def test_clamp_applies_to_every_estimator() -> None:
    config = GRPOConfig(advantage_estimator="reinforce_pp", advantage_clip_low=-1.0, advantage_clip_high=1.0)
    got = GRPO(config).advantages(HAND, 4)
    assert got.max().item() == 1.0 and got.min().item() == -1.0  # 0.75 / 0.4677 = 1.60 and -1.07 before the clamp
    with pytest.raises(ValueError, match="advantage_clip_low"):
        GRPOConfig(advantage_clip_low=1.0, advantage_clip_high=0.0)


@pytest.mark.parametrize("name", BUILT_INS)
def test_grpo_built_from_python_selects_by_name(name: str) -> None:
    grpo = rf.GRPO(rf.GRPOConfig(advantage_estimator=name))
    estimator, _ = ESTIMATORS[name]
    assert torch.equal(grpo.advantages(HAND, 4), estimator(HAND, 4, config=grpo.config))
    assert type(grpo._advantage_estimator) is type(estimator)  # resolved once, then reused


def test_python_options_as_an_object_or_a_mapping() -> None:
    as_object = GRPO(GRPOConfig(advantage_estimator="reinforce_pp", advantage_estimator_cfg=ReinforcePPConfig(minus_baseline=False)))
    as_mapping = GRPO(GRPOConfig(advantage_estimator="reinforce_pp", advantage_estimator_cfg={"minus_baseline": False}))
    expected = ReinforcePPEstimator(ReinforcePPConfig(minus_baseline=False))(HAND, 4)
    assert torch.equal(as_object.advantages(HAND, 4), expected) and torch.equal(as_mapping.advantages(HAND, 4), expected)
    with pytest.raises(ConfigError, match="unknown key 'minus_baselin'"):
        make_advantage_estimator(GRPOConfig(advantage_estimator="reinforce_pp", advantage_estimator_cfg={"minus_baselin": 1}))
    with pytest.raises(PluginError, match="'rloo' takes no options"):
        make_advantage_estimator(GRPOConfig(advantage_estimator="rloo", advantage_estimator_cfg={"x": 1}))


def test_unknown_name_from_python_names_the_key_the_closest_and_all_known() -> None:
    with pytest.raises(PluginError) as err:
        GRPO(GRPOConfig(advantage_estimator="rlo")).advantages(HAND, 4)
    message = str(err.value)
    assert message.startswith("grpo.advantage_estimator: unknown advantage estimator 'rlo'; did you mean 'rloo'?")
    assert "known: " + ", ".join(BUILT_INS) in message


def test_a_subclass_overriding_the_hook_still_wins() -> None:
    class Halved(GRPO):
        def advantages(self, rewards: torch.Tensor, group: int) -> torch.Tensor:
            return super().advantages(rewards, group) / 2

    assert torch.equal(Halved(GRPOConfig(advantage_estimator="dr_grpo")).advantages(HAND, 4), DrGRPOEstimator()(HAND, 4) / 2)


def test_an_estimator_answering_the_wrong_shape_is_a_clear_error() -> None:
    with pytest.raises(ReinforgeError, match=r"returned \(4,\) for rewards of shape \(8,\)"):
        estimate_advantages(lambda rewards, group, config: rewards[:4], HAND, 4, GRPOConfig())


# ----------------------------------------------------------------------------- the registry
def test_built_ins_are_registered_as_a_kind() -> None:
    registry = Registry.create(NO_ENTRY_POINTS)
    assert registry.names("advantage_estimator") == BUILT_INS
    assert all(s.source.origin == "built-in" for s in registry.specs("advantage_estimator"))
    assert registry.advantage_estimator("rloo") is RLOOEstimator
    assert registry.config_class("advantage_estimator", "reinforce_pp") is ReinforcePPConfig
    assert registry.config_class("advantage_estimator", "grpo") is None
    with pytest.raises(PluginError, match="unknown advantage estimator 'dr-grpo'; did you mean 'dr_grpo'"):
        registry.advantage_estimator("dr-grpo")


def test_registering_imports_no_estimator() -> None:
    import subprocess

    code = (
        "import sys\nfrom reinforge.core.registry import Registry, RegistrySettings\n"
        "r = Registry.create(RegistrySettings(load_entry_points=False))\nassert 'rloo' in r.names('advantage_estimator')\n"
        "print('reinforge.algorithms.advantage_estimators' in sys.modules, 'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]


@attrs.define(kw_only=True, frozen=True)
class ScaledConfig:
    scale: float = 1.0


class Scaled:
    """A third-party estimator with options: rewards minus the group mean, times `scale`."""

    def __init__(self, options: ScaledConfig | None = None) -> None:
        self.scale = (options or ScaledConfig()).scale

    def __call__(self, rewards: torch.Tensor, group: int, *, config: object) -> torch.Tensor:
        grouped = rewards.view(-1, group)
        return ((grouped - grouped.mean(dim=1, keepdim=True)) * self.scale).flatten()


class FakeDistribution:
    """Just enough of importlib.metadata.Distribution for entry-point discovery."""

    def __init__(self, name: str, version: str, entry_points: list[importlib.metadata.EntryPoint]) -> None:
        self.metadata = {"name": name}
        self.version = version
        self.entry_points = entry_points


@pytest.fixture
def installed_estimator_package(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """A package `reinforge-scaled==1.2` exposing the entry point `scaled` in the group `reinforge` (faked, not installed)."""
    module = types.ModuleType("reinforge_scaled_plugin")

    @hookimpl
    def reinforge_register_advantage_estimators(register):  # noqa: ANN001, ANN202
        register("scaled", Scaled, config=ScaledConfig, description="r - group mean, scaled")

    module.reinforge_register_advantage_estimators = reinforge_register_advantage_estimators
    monkeypatch.setitem(sys.modules, "reinforge_scaled_plugin", module)
    entry_point = importlib.metadata.EntryPoint("scaled", "reinforge_scaled_plugin", "reinforge")
    dist = FakeDistribution("reinforge-scaled", "1.2", [entry_point])
    monkeypatch.setattr(importlib.metadata, "distributions", lambda: [dist])
    monkeypatch.chdir(tmp_path)  # no project plugins.toml
    monkeypatch.delenv("REINFORGE_PLUGINS", raising=False)


def test_an_installed_package_adds_an_estimator_selectable_by_name(installed_estimator_package, tmp_path) -> None:
    registry = Registry.create()
    spec = registry.get("advantage_estimator", "scaled")
    assert str(spec.source) == "reinforge-scaled==1.2"
    # from Python (the default registry finds the package) ...
    grpo = rf.GRPO(rf.GRPOConfig(advantage_estimator="scaled", advantage_estimator_cfg=ScaledConfig(scale=2.0)))
    assert grpo.advantages(HAND, 4).tolist() == [1.5, -0.5, -0.5, -0.5, 1.0, 1.0, -1.0, -1.0]
    # ... and from YAML, options structured by the package's own config class
    recipe = tmp_path / "run.yaml"
    recipe.write_text(f"defaults: {CPU_RECIPE}\ngrpo:\n  advantage_estimator: scaled\n  advantage_estimator_cfg: {{scale: 3.0}}\n")
    config = rf.load_config(recipe, registry=registry)
    assert config.grpo.advantage_estimator_cfg == ScaledConfig(scale=3.0)
    assert make_advantage_estimator(config.grpo, registry).scale == 3.0
    with pytest.raises(ConfigError, match=r"unknown key 'scal'.*@ grpo.advantage_estimator_cfg.scal"):
        rf.load_config(recipe, ["+grpo.advantage_estimator_cfg.scal=1.0"], registry=registry)


# ----------------------------------------------------------------------------- YAML
def test_yaml_selects_an_estimator_and_its_options(tmp_path) -> None:
    recipe = tmp_path / "run.yaml"
    recipe.write_text(f"defaults: {CPU_RECIPE}\ngrpo:\n  advantage_estimator: rloo\n")
    registry = Registry.create(NO_ENTRY_POINTS)
    config = rf.load_config(recipe, registry=registry)
    assert config.grpo.advantage_estimator == "rloo" and config.grpo.advantage_estimator_cfg is None
    assert rf.load_config(CPU_RECIPE, registry=registry).grpo.advantage_estimator == "grpo"  # the default
    options = ["grpo.advantage_estimator=reinforce_pp", "grpo.advantage_estimator_cfg.minus_baseline=false"]
    config = rf.load_config(CPU_RECIPE, options, registry=registry)
    assert config.grpo.advantage_estimator_cfg == ReinforcePPConfig(minus_baseline=False)
    # the saved config (beside every checkpoint) loads back to the same settings
    again = structure(to_dict(config.grpo), GRPOConfig, lookup=registry.config_class)
    assert again == config.grpo


def test_yaml_unknown_estimator_names_the_key_and_the_known_names(tmp_path) -> None:
    recipe = tmp_path / "run.yaml"
    recipe.write_text(f"defaults: {CPU_RECIPE}\ngrpo:\n  advantage_estimator: reinforce_plus_plus\n")
    with pytest.raises(ConfigError) as err:
        rf.load_config(recipe, registry=Registry.create(NO_ENTRY_POINTS))
    message = str(err.value)
    assert "unknown advantage estimator 'reinforce_plus_plus'; did you mean 'reinforce_pp'?" in message
    assert "known: dr_grpo, grpo, reinforce_pp, rloo" in message and "@ grpo.advantage_estimator" in message
    with pytest.raises(ConfigError, match=r"'rloo' takes no options @ grpo.advantage_estimator_cfg"):
        rf.load_config(
            CPU_RECIPE, ["grpo.advantage_estimator=rloo", "grpo.advantage_estimator_cfg={x: 1}"],
            registry=Registry.create(NO_ENTRY_POINTS),
        )


# ----------------------------------------------------------------------------- one GRPO step on the tiny model
def _length_reward(prompt: str, response: str, **metadata: object) -> float:
    return float(len(response) % 7)  # varies between samples, so the advantages are not all 0


@pytest.mark.integration
def test_one_grpo_step_with_dr_grpo_and_its_loss_reduction(tiny_model_dir, tmp_path) -> None:
    from reinforge.environments.function import FunctionEnvironment
    from tests.integration.grpo_helpers import tiny_overrides

    dr_grpo = ("grpo.advantage_estimator=dr_grpo", "loss_fn.loss_reduction=seq_sum_constant",
               "loss_fn.loss_reduction_constant=12", "grpo.val_at_end=false")
    registry = Registry.create(NO_ENTRY_POINTS)
    config = rf.load_config(CPU_RECIPE, tiny_overrides(tiny_model_dir, tmp_path, steps=1, extra=dr_grpo), registry=registry)
    trainer = rf.Trainer.from_config(config, registry, environment=FunctionEnvironment(_length_reward))
    grpo = trainer.algorithm
    assert trainer.run.registry is registry and isinstance(grpo._advantage_estimator, DrGRPOEstimator)  # resolved in setup
    calls = []
    resolved = grpo._advantage_estimator

    def spy(rewards: torch.Tensor, group: int, *, config: GRPOConfig) -> torch.Tensor:
        calls.append((rewards.clone(), group, resolved(rewards, group, config=config)))
        return calls[-1][2]

    grpo._advantage_estimator = spy
    try:
        metrics = grpo.train_step(1, next(trainer.run.loader))
    finally:
        trainer.run.shutdown()
    assert len(calls) == 1
    rewards, group, advantages = calls[0]
    assert group == 4 and rewards.unique().numel() > 1
    np.testing.assert_allclose(advantages.numpy(), reference_dr_grpo(rewards.double().numpy(), group), atol=1e-6)
    assert metrics["train/advantages_mean"] == pytest.approx(0.0, abs=1e-6)  # r - group mean sums to 0 per group
    assert metrics["train/advantages_max_abs"] == pytest.approx(advantages.abs().max().item(), abs=1e-6)
    assert grpo.loss_config.reduction == "seq_sum_constant" and math.isfinite(metrics["train/loss"])
    assert metrics["train/optimizer_steps"] == 1.0
