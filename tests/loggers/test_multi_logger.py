"""MultiLogger: loggers built by name through the real registry, every call fanned out."""

from __future__ import annotations

import json

import pytest

from reinforge.core.errors import PluginError, ReinforgeError
from reinforge.core.hookspecs import hookimpl
from reinforge.core.registry import Registry, RegistrySettings
from reinforge.core.run_config import LoggerConfig
from reinforge.loggers import MultiLogger
from reinforge.loggers.console import ConsoleLogger
from reinforge.loggers.jsonl import JsonlLogger

NO_ENTRY_POINTS = RegistrySettings(load_entry_points=False)


class MinimalLogger:
    """A third-party logger with only the `Logger` protocol's two methods."""

    instances: list[MinimalLogger] = []

    def __init__(self, config, log_dir, *, run_name, total_steps):
        self.calls: list[tuple] = []
        self.closed = False
        self.fail_on_close = run_name == "fail-close"
        MinimalLogger.instances.append(self)

    def log(self, metrics, step):
        self.calls.append((dict(metrics), step))

    def close(self):
        self.closed = True
        if self.fail_on_close:
            raise OSError("disk full")


class NotALogger:
    def __init__(self, config, log_dir, *, run_name, total_steps):
        pass


class FakeLoggerPlugin:
    @hookimpl
    def reinforge_register_loggers(self, register):
        register("minimal", MinimalLogger, description="log and close only")
        register("broken", NotALogger)
        register("needs_pkg", MinimalLogger, requires=("reinforge_no_such_package",), extra="nosuch")


@pytest.fixture
def registry():
    MinimalLogger.instances.clear()
    return Registry.create(NO_ENTRY_POINTS, plugins=[("fake-loggers", FakeLoggerPlugin())])


def test_builtin_loggers_are_registered(registry):
    assert {"console", "jsonl", "tensorboard", "wandb", "mlflow"} <= set(registry.names("logger"))
    assert registry.get("logger", "wandb").extra == "wandb"
    assert registry.get("logger", "mlflow").requires == ("mlflow",)


def test_fans_out_to_every_logger_built_by_name(registry, tmp_path, capsys):
    config = LoggerConfig(loggers=("console", "jsonl", "minimal"), num_samples_to_log=2)
    with MultiLogger.from_config(config, registry, log_dir=tmp_path, run_name="demo", total_steps=3) as logger:
        assert [type(x) for x in logger.loggers] == [ConsoleLogger, JsonlLogger, MinimalLogger]
        logger.log({"train/reward_mean": 0.5}, step=1)
        logger.log_samples([{"prompt": str(i), "response": "r", "reward": 0.0} for i in range(5)], step=1)
        logger.log_config({"policy": {"model_name": "tiny"}})
    minimal = MinimalLogger.instances[0]

    assert json.loads((tmp_path / "metrics.jsonl").read_text()) == {"step": 1, "train/reward_mean": 0.5}
    samples = (tmp_path / "samples" / "step_1.jsonl").read_text().splitlines()
    assert len(samples) == 2  # num_samples_to_log
    assert json.loads((tmp_path / "params.json").read_text()) == {"policy": {"model_name": "tiny"}}
    assert minimal.calls == [({"train/reward_mean": 0.5}, 1)]  # no log_samples/log_config: skipped, not an error
    assert minimal.closed
    assert capsys.readouterr().out.startswith("step 1/3")


def test_log_dir_defaults_to_the_config(registry, tmp_path):
    config = LoggerConfig(log_dir=str(tmp_path / "logs"), loggers=("jsonl",))
    MultiLogger.from_config(config, registry).close()
    assert (tmp_path / "logs" / "metrics.jsonl").is_file()


def test_zero_samples_to_log_writes_none(registry, tmp_path):
    config = LoggerConfig(loggers=("jsonl",), num_samples_to_log=0)
    with MultiLogger.from_config(config, registry, log_dir=tmp_path) as logger:
        logger.log_samples([{"prompt": "p"}], step=1)
    assert not (tmp_path / "samples").exists()


def test_unknown_name_suggests_the_closest(registry, tmp_path):
    with pytest.raises(PluginError, match=r"unknown logger 'jsnol'; did you mean 'jsonl'\?"):
        MultiLogger.from_config(LoggerConfig(loggers=("jsnol",)), registry, log_dir=tmp_path)


def test_missing_requirement_says_what_to_install(registry, tmp_path):
    with pytest.raises(PluginError, match="reinforge_no_such_package"):
        MultiLogger.from_config(LoggerConfig(loggers=("minimal", "needs_pkg")), registry, log_dir=tmp_path)
    assert MinimalLogger.instances[0].closed  # the loggers built before the failure are closed


def test_object_without_the_protocol_is_rejected(registry, tmp_path):
    with pytest.raises(PluginError, match="lacks log"):
        MultiLogger.from_config(LoggerConfig(loggers=("broken",)), registry, log_dir=tmp_path)


def test_duplicate_names_are_a_user_error(registry, tmp_path):
    with pytest.raises(ReinforgeError, match="'jsonl' more than once"):
        MultiLogger.from_config(LoggerConfig(loggers=("jsonl", "console", "jsonl")), registry, log_dir=tmp_path)


def test_close_closes_every_logger_then_reports_the_failure(registry, tmp_path):
    config = LoggerConfig(loggers=("minimal",))
    failing = MultiLogger.from_config(config, registry, log_dir=tmp_path, run_name="fail-close")
    fine = MultiLogger.from_config(config, registry, log_dir=tmp_path, run_name="ok")
    both = MultiLogger([*failing.loggers, *fine.loggers])
    with pytest.raises(OSError, match="disk full"):
        both.close()
    assert all(x.closed for x in MinimalLogger.instances)
