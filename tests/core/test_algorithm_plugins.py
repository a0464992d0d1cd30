"""A registered algorithm is a first-class name: `algorithm: NAME` from YAML, its run config and schedule from
its registration (`run_config="grpo"`), and a schedule the loop would not read is an error, never silence."""

from __future__ import annotations

from typing import ClassVar

import attrs
import pytest

import reinforge as rf
from reinforge.algorithms.grpo_config import GRPOConfig, GRPORunConfig
from reinforge.core.errors import PluginError, ReinforgeError
from reinforge.core.loop import loop_from_run_config
from reinforge.core.registry import Registry, RegistrySettings


class CountingGRPO(rf.GRPO):
    """A GRPO variant written against the public API: it changes something, not its config."""

    def validate(self, step: int) -> dict[str, float]:
        return {"val/variant": 1.0, **super().validate(step)}


class VariantPlugin:
    @rf.hookimpl
    def reinforge_register_algorithms(self, register):
        register("counting_grpo", CountingGRPO.from_run_config, run_config="grpo", description="a GRPO variant")


def registry_with(*plugins: object) -> Registry:
    return Registry.create(RegistrySettings(load_entry_points=False), plugins=[(f"p{i}", p) for i, p in enumerate(plugins)])


RECIPE = """\
algorithm: counting_grpo
grpo: {max_num_steps: 2, val_period: 0, num_prompts_per_step: 2}
policy: {model_name: m/, train_global_batch_size: 8}
"""


def test_a_variant_registered_with_grpos_run_config_loads_from_yaml_with_its_schedule(tmp_path):
    registry = registry_with(VariantPlugin())
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE)
    config = rf.load_config(recipe, registry=registry)
    assert type(config) is GRPORunConfig and config.algorithm == "counting_grpo"
    loop = loop_from_run_config(config)
    assert loop.max_steps == 2 and loop.val_period == 0  # read from grpo:, not dropped for a `counting_grpo:` section
    algorithm = registry.algorithm(config.algorithm)(config)
    assert type(algorithm) is CountingGRPO and algorithm.config.num_prompts_per_step == 2
    # an override names the algorithm too, and an unknown name is refused with the closest one
    assert rf.load_config(recipe, ["algorithm=grpo"], registry=registry).algorithm == "grpo"
    with pytest.raises(PluginError, match="unknown algorithm 'countin_grpo'; did you mean 'counting_grpo'"):
        rf.load_config(recipe, ["algorithm=countin_grpo"], registry=registry)


def test_the_variant_shows_the_run_config_it_takes(capsys):
    registry = registry_with(VariantPlugin())
    assert registry.config_class("algorithm", "counting_grpo") is GRPORunConfig
    assert registry.get("algorithm", "counting_grpo").run_config == "grpo"


def test_run_config_must_name_another_registered_algorithm():
    class Typo:
        @rf.hookimpl
        def reinforge_register_algorithms(self, register):
            register("typo_grpo", CountingGRPO.from_run_config, run_config="grpoo")
            register("itself", CountingGRPO.from_run_config, run_config="itself")

    registry = registry_with(Typo())
    with pytest.raises(PluginError, match="run_config='grpoo', which is not another registered algorithm; did you mean 'grpo'"):
        registry.config_class("algorithm", "typo_grpo")
    with pytest.raises(PluginError, match="run_config='itself'"):
        registry.config_class("algorithm", "itself")


def test_only_an_algorithm_takes_another_ones_run_config():
    class Wrong:
        @rf.hookimpl
        def reinforge_register_environments(self, register):
            register("env", "collections:OrderedDict", run_config="grpo")

    with pytest.raises(PluginError, match="only an algorithm may take another algorithm's run config"):
        registry_with(Wrong())


@attrs.define(kw_only=True, frozen=True)
class NoScheduleSection(GRPORunConfig):
    """A run config written before `schedule_section`: the loop looks for a section named after its algorithm."""

    schedule_section: ClassVar[str | None] = None


@attrs.define(kw_only=True, frozen=True)
class TwoSchedules(GRPORunConfig):
    warmup: GRPOConfig = attrs.field(factory=GRPOConfig)


def test_a_schedule_the_loop_would_not_read_is_an_error_naming_the_section_and_the_algorithm():
    policy = rf.backends.DTensorTraining("m/").policy
    silent = NoScheduleSection(algorithm="dr_grpo", grpo=GRPOConfig(max_num_steps=2), policy=policy)
    with pytest.raises(ReinforgeError) as err:
        loop_from_run_config(silent)  # it used to schedule the default 100 steps without a word
    assert "algorithm 'dr_grpo'" in str(err.value) and "no `dr_grpo:` section" in str(err.value)
    assert "its schedule keys are in `grpo:`" in str(err.value) and "run_config='grpo'" in str(err.value)
    with pytest.raises(ReinforgeError, match=r"the `warmup:` section of TwoSchedules holds schedule keys .* nothing reads"):
        loop_from_run_config(TwoSchedules(policy=policy))


def test_load_config_refuses_an_unread_schedule_before_anything_is_built(tmp_path):
    class Legacy:
        @rf.hookimpl
        def reinforge_register_algorithms(self, register):
            register("legacy", CountingGRPO.from_run_config, config=NoScheduleSection)

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.replace("counting_grpo", "legacy"))
    with pytest.raises(ReinforgeError, match="no `legacy:` section"):
        rf.load_config(recipe, registry=registry_with(Legacy()))


def test_the_fingerprint_reads_a_variants_settings_from_the_section_it_takes():
    from reinforge.core.trainer_state import run_fingerprint

    plain = {"algorithm": "moving_baseline", "grpo": {"normalize_rewards": False, "max_num_steps": 3}, "policy": {}}
    print_free = run_fingerprint(plain, weights="w", section_name="grpo")
    assert print_free["algorithm_settings"] == {"normalize_rewards": False}  # the schedule keys are left out
    assert run_fingerprint(plain, weights="w")["algorithm_settings"] == {}  # what it read before: nothing


def test_an_algorithm_written_before_async_rollouts_is_told_the_member_it_lacks():
    from reinforge.compose import _check_algorithm_members

    class OldStyle:  # a third-party algorithm from before asynchronous GRPO: no async_rollouts_max_age
        needs_generation, needs_environment, needs_reference = True, True, False
        record_format = "prompts"

    with pytest.raises(ReinforgeError, match=r"OldStyle lacks members .*: async_rollouts_max_age \(None for synchronous rollouts\)"):
        _check_algorithm_members(OldStyle())
    OldStyle.async_rollouts_max_age = None
    _check_algorithm_members(OldStyle())  # complete now
    for built_in in (rf.SFT, rf.DPO):
        assert built_in.async_rollouts_max_age is None  # the built-ins declare it
