"""`reinforge plugins check NAME`: run the shipped conformance suite of NAME's kind against it.

The suites (`reinforge.testing.conformance_*`) pin down what the rest of reinforge relies on from each
kind of plugin: backends, environments, algorithms, advantage estimators, dataset readers and loggers.
A third-party plugin that passes its suite can stand in for a built-in one. This writes a small pytest
module that points the suite at the plugin, as the registry resolves it (with the same plugin
settings as this command), and runs it on the offline tiny model.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from reinforge.core.errors import ReinforgeError
from reinforge.core.registry import KINDS, Registry

_HEADER = '''import pytest
from reinforge.core.registry import Registry, RegistrySettings

REGISTRY = Registry.create({settings!r})
'''
_GENERATION = '''from reinforge.testing.conformance_generation import GenerationBackendConformance


class TestConformance(GenerationBackendConformance):
    backend_class = REGISTRY.generation_backend({name!r})
'''
_TRAINING = '''from reinforge.testing.conformance_training import *  # noqa: F403


@pytest.fixture
def training_backend_factory():
    backend_class = REGISTRY.training_backend({name!r})

    def make(policy, *, need_reference=False):
        return backend_class(policy, None, need_reference=need_reference, seed=0)

    return make


@pytest.fixture
def conformance_data_parallel():
    return {data_parallel!r}


@pytest.fixture
def conformance_lora():
    return {lora!r}
'''
_ENVIRONMENT = '''from reinforge.testing.conformance_environment import EnvironmentConformance


class TestConformance(EnvironmentConformance):
    environment_class = REGISTRY.environment({name!r})
    replies = (*EnvironmentConformance.replies, *{replies!r})
'''
_ALGORITHM = '''from reinforge.testing.conformance_algorithm import AlgorithmConformance


class TestConformance(AlgorithmConformance):
    algorithm_name = {name!r}
    registry = REGISTRY
'''
_ADVANTAGE = '''from reinforge.testing.conformance_advantage import AdvantageEstimatorConformance


class TestConformance(AdvantageEstimatorConformance):
    estimator_class = REGISTRY.advantage_estimator({name!r})
'''
_DATASET = '''from reinforge.testing.conformance_data import DatasetReaderConformance


class TestConformance(DatasetReaderConformance):
    reader = staticmethod(REGISTRY.dataset({name!r}))
'''
_LOGGER = '''from reinforge.testing.conformance_data import LoggerConformance


class TestConformance(LoggerConformance):
    logger_name = {name!r}
    registry = REGISTRY
'''
_SUITES = {
    "generation_backend": _GENERATION,
    "training_backend": _TRAINING,
    "algorithm": _ALGORITHM,
    "environment": _ENVIRONMENT,
    "advantage_estimator": _ADVANTAGE,
    "dataset": _DATASET,
    "logger": _LOGGER,
}
_CONFTEST = '''pytest_plugins = ["reinforge.testing.fixtures"]


def pytest_configure(config):
    config.addinivalue_line("markers", "distributed: starts 2 processes (the training suite's data-parallel test)")
'''


def add_check_parser(actions: argparse._SubParsersAction) -> None:
    check = actions.add_parser("check", help="run the conformance suite of a plugin's kind against it")
    check.add_argument("name", help="any plugin: a backend, environment, algorithm, advantage estimator, dataset or logger")
    check.add_argument("--kind", choices=list(_SUITES), help="needed when several kinds share the name")
    check.add_argument("-k", dest="select", help="only the conformance tests matching this pytest -k expression")
    check.add_argument(
        "--reply", action="append", default=[], metavar="TEXT",
        help="environments: another model reply to score (repeatable), e.g. one that calls a tool, so that a "
        "multi-turn environment's observations are checked",
    )
    check.set_defaults(run=run_check)


def conformance_module(registry: Registry, name: str, kind: str | None = None, *, replies: tuple[str, ...] = ()) -> str:
    """The pytest module that runs the suite of `name`'s kind against it."""
    kinds = [k for k in _SUITES if (kind is None or k == kind) and name in registry.names(k)]
    if not kinds:
        known = sorted({n for k in _SUITES for n in registry.names(k) if kind is None or k == kind})
        what = "plugin" if kind is None else KINDS[kind][1]
        raise ReinforgeError(
            f"no {what} is called '{name}'; known: {', '.join(known)} "
            "(a plugin outside this project's plugins.toml needs --plugins FILE before `plugins`)"
        )
    if len(kinds) > 1:
        raise ReinforgeError(
            f"'{name}' names {' and '.join(KINDS[k][1] for k in kinds)} plugins; add --kind {' or --kind '.join(kinds)}"
        )
    spec = registry.get(kinds[0], name)
    spec.load()  # fail here, with the install command, when it is not installed
    # A backend that declared no data parallelism skips the 2-rank test (the executors never run it so);
    # one that declared nothing is tested, since the executors would let it run on several ranks.
    data_parallel = spec.capabilities is None or spec.capabilities.data_parallel
    lora = spec.capabilities is not None and spec.capabilities.lora  # the LoRA tests run where it is declared
    suite = _SUITES[kinds[0]].format(name=name, data_parallel=data_parallel, lora=lora, replies=tuple(replies))
    return _HEADER.format(settings=registry.settings) + "\n" + suite


def run_check(args: argparse.Namespace) -> int:
    import pytest

    registry = Registry.create(project_file=args.plugins)
    source = conformance_module(registry, args.name, args.kind, replies=tuple(args.reply))
    with tempfile.TemporaryDirectory(prefix="reinforge-check-") as folder:
        (Path(folder) / "conftest.py").write_text(_CONFTEST)
        (Path(folder) / "test_conformance.py").write_text(source)
        options = [folder, "-q", "-p", "no:cacheprovider", "--rootdir", folder,
                   # pytest's note that it cannot rewrite asserts in modules this command imported before it
                   "-W", "ignore::pytest.PytestAssertRewriteWarning",
                   *(["-k", args.select] if args.select else [])]
        return int(pytest.main(options))
