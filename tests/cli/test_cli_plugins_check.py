"""`reinforge plugins check NAME` runs the conformance suite against an installed backend (here the
third-party example backend of examples/third_party/, found through --plugins)."""

from __future__ import annotations

import subprocess

import pytest

from tests.integration.grpo_helpers import OFFLINE_ENV, REINFORGE, REPO

PLUGINS = str(REPO / "examples" / "third_party" / "plugins.toml")


def check(*args: str) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([REINFORGE, "--plugins", PLUGINS, "plugins", "check", *args], capture_output=True, text=True,
                          env={**os.environ, **OFFLINE_ENV})


@pytest.mark.integration
def test_a_conforming_part_of_the_suite_passes_and_a_missing_feature_fails():
    passed = check("plain_torch", "-k", "output_columns or greedy_is_deterministic or same_seed_same_samples")
    assert passed.returncode == 0, passed.stdout[-3000:] + passed.stderr[-3000:]
    assert "3 passed" in passed.stdout
    # pytest's deprecation of class fixtures written as instance methods, once printed for every fixture
    assert "deprecat" not in passed.stdout.lower() and "PytestRemovedIn" not in passed.stdout
    # The example samples from the whole distribution only, so the top-k test of the suite fails, as it should.
    failed = check("plain_torch", "-k", "top_k_1_equals_greedy")
    assert failed.returncode == 1 and "1 failed" in failed.stdout


def test_an_unknown_backend_names_the_known_ones():
    done = check("plain_torc")
    assert done.returncode != 0
    assert "no plugin is called 'plain_torc'" in done.stderr and "plain_torch" in done.stderr


def test_the_two_rank_test_is_skipped_only_for_a_backend_declared_without_data_parallelism():
    from reinforge.cli.plugins_check_cmd import conformance_module
    from reinforge.core.constructors import Capabilities
    from reinforge.core.hookspecs import hookimpl
    from reinforge.core.registry import Registry

    class Plugin:
        @hookimpl
        def reinforge_register_training_backends(self, register):
            register("one_rank", "builtins:object", capabilities=Capabilities())
            register("undeclared", "builtins:object")

    registry = Registry.create(plugins=[("test", Plugin())])
    fixture = "def conformance_data_parallel():\n    return {}\n"
    assert fixture.format(False) in conformance_module(registry, "one_rank")
    assert fixture.format(True) in conformance_module(registry, "undeclared")  # the executors would run it on 2 ranks
    assert fixture.format(True) in conformance_module(registry, "dtensor")
    lora = "def conformance_lora():\n    return {}\n"  # the LoRA tests run only where Capabilities(lora=True) says so
    assert lora.format(True) in conformance_module(registry, "dtensor")
    assert lora.format(False) in conformance_module(registry, "one_rank")
    assert lora.format(False) in conformance_module(registry, "undeclared")


@pytest.mark.integration
@pytest.mark.distributed
def test_the_check_of_dtensor_runs_the_two_rank_data_parallel_test():
    done = check("dtensor", "-k", "two_data_parallel and not lora")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "1 passed" in done.stdout


def test_every_kind_of_plugin_has_a_suite_and_a_shared_name_asks_for_the_kind():
    from reinforge.cli.plugins_check_cmd import _SUITES, conformance_module
    from reinforge.core.registry import KINDS, Registry

    assert set(_SUITES) == set(KINDS)
    registry = Registry.create()
    for kind, name, suite in (("environment", "math", "EnvironmentConformance"), ("algorithm", "sft", "AlgorithmConformance"),
                              ("advantage_estimator", "rloo", "AdvantageEstimatorConformance"),
                              ("dataset", "arithmetic", "DatasetReaderConformance"), ("logger", "console", "LoggerConformance")):
        assert suite in conformance_module(registry, name, kind)
    with pytest.raises(Exception, match="'grpo' names algorithm and advantage estimator plugins; add --kind algorithm or --kind advantage_estimator"):
        conformance_module(registry, "grpo")
    assert "replies = (*EnvironmentConformance.replies, *('<calc>1</calc>',))" in conformance_module(
        registry, "math", replies=("<calc>1</calc>",))


def test_the_environment_and_estimator_suites_run_from_the_command_line():
    env = check("math", "-k", "one_answer or order_given or guard")
    assert env.returncode == 0 and "3 passed" in env.stdout, env.stdout[-3000:] + env.stderr[-3000:]
    estimator = check("rloo")
    assert estimator.returncode == 0 and "6 passed" in estimator.stdout, estimator.stdout[-3000:]
    assert "warning" not in (env.stdout + estimator.stdout).lower()
