"""Each logger owns its settings: `logger.logger_cfg.<name>` is structured with the options class that logger
registered, reaches only that logger, and the old flat keys (`logger.wandb_project`, ...) say where they went."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from reinforge.core.config import apply_overrides, dump_yaml, load_yaml, structure, to_dict
from reinforge.core.errors import ConfigError
from reinforge.core.hookspecs import hookimpl
from reinforge.core.load import load_config
from reinforge.core.registry import Registry, RegistrySettings
from reinforge.core.run_config import LoggerConfig
from reinforge.loggers import MultiLogger
from reinforge.loggers.config import MlflowConfig, WandbConfig
from tests.integration.grpo_helpers import CPU_RECIPE


@attrs.define(kw_only=True, frozen=True)
class RecordingOptions:
    prefix: str = "default-prefix"


class RecordingLogger:
    """A third-party logger with options of its own; remembers what it was built with."""

    built: list[RecordingLogger] = []

    def __init__(self, config, log_dir, *, run_name, total_steps, options=None):
        self.options = options
        RecordingLogger.built.append(self)

    def log(self, metrics, step):
        pass

    def close(self):
        pass


class Plugin:
    @hookimpl
    def reinforge_register_loggers(self, register):
        register("recording", RecordingLogger, config=RecordingOptions)


@pytest.fixture
def registry() -> Registry:
    RecordingLogger.built = []
    return Registry.create(RegistrySettings(load_entry_points=False), plugins=[("recording", Plugin())])


def logger_config(registry: Registry, data: dict) -> LoggerConfig:
    return structure(data, LoggerConfig, lookup=registry.config_class, source="test.yaml")


def test_each_entry_is_structured_with_its_loggers_options_class(registry):
    config = logger_config(registry, {"logger_cfg": {"wandb": {"project": "demo"}, "mlflow": {"experiment": "e1"}}})
    assert config.logger_cfg == {"wandb": WandbConfig(project="demo"), "mlflow": MlflowConfig(experiment="e1")}
    assert logger_config(registry, {}).logger_cfg == {}
    assert structure(to_dict(config), LoggerConfig, lookup=registry.config_class) == config  # saved configs reload


def test_wrong_entries_are_reported_at_their_path(registry):
    with pytest.raises(ConfigError) as caught:
        logger_config(registry, {"logger_cfg": {"wandb": {"projekt": "x"}, "console": {"colour": True}, "wandbb": {}}})
    text = str(caught.value)
    assert "unknown key 'projekt'; did you mean 'project'? @ logger_cfg.wandb.projekt" in text
    assert "'console' takes no options @ logger_cfg.console" in text
    assert "unknown logger 'wandbb'; did you mean 'wandb'?" in text and "@ logger_cfg.wandbb" in text


@pytest.mark.parametrize(
    ("old", "value", "new"),
    [
        ("wandb_project", "demo", "logger.logger_cfg.wandb.project"),
        ("mlflow_tracking_uri", "http://mlflow:5000", "logger.logger_cfg.mlflow.tracking_uri"),
        ("mlflow_experiment", "demo", "logger.logger_cfg.mlflow.experiment"),
    ],
)
def test_the_old_flat_keys_name_their_new_spelling(tmp_path, old, value, new):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"defaults: {CPU_RECIPE}\nlogger:\n  {old}: {value}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(recipe)
    assert f"'{old}' has moved: write {new} instead (the plugin that uses it owns that setting now) @ logger.{old}" in str(caught.value)
    with pytest.raises(ConfigError) as caught:  # the same on the command line
        load_config(CPU_RECIPE, [f"logger.{old}={value}"])
    assert f"override 'logger.{old}={value}': '{old}' has moved: write {new} instead" in str(caught.value)


def test_a_config_saved_by_an_earlier_version_still_loads(tmp_path):
    """Checkpoints hold the resolved config, with the old keys at their defaults: they carry no setting."""
    recipe = tmp_path / "saved.yaml"
    recipe.write_text(
        f"defaults: {CPU_RECIPE}\nlogger:\n  wandb_project: null\n  mlflow_tracking_uri: null\n  mlflow_experiment: reinforge\n"
    )
    assert load_config(recipe).logger.logger_cfg == {}


def test_the_new_keys_work_from_the_command_line(registry):
    config = load_config(CPU_RECIPE, ["logger.logger_cfg.wandb.project=demo", "logger.logger_cfg.mlflow={experiment: e2}"])
    assert config.logger.logger_cfg == {"wandb": WandbConfig(project="demo"), "mlflow": MlflowConfig(experiment="e2")}
    assert "  logger_cfg:\n    wandb: {project: demo}\n    mlflow: {tracking_uri: null, experiment: e2}\n" in dump_yaml(config)
    with pytest.raises(ConfigError, match="key 'logger.logger_cfg.wandb.projekt' is not in the config"):
        apply_overrides(load_yaml(CPU_RECIPE), ["logger.logger_cfg.wandb.projekt=x"], schema=type(config),
                        lookup=Registry.create().config_class)  # fmt: skip


def test_a_logger_gets_only_its_own_options_and_none_without_an_entry(registry, tmp_path):
    config = logger_config(registry, {"loggers": ["recording"], "logger_cfg": {"recording": {"prefix": "p1"}, "wandb": {"project": "x"}}})
    MultiLogger.from_config(config, registry, log_dir=tmp_path).close()
    MultiLogger.from_config(LoggerConfig(loggers=("recording",)), registry, log_dir=tmp_path).close()
    # From Python, a plain dict is checked and structured like YAML.
    MultiLogger.from_config(LoggerConfig(loggers=("recording",), logger_cfg={"recording": {"prefix": "p2"}}), registry,
                            log_dir=tmp_path).close()  # fmt: skip
    assert [logger.options for logger in RecordingLogger.built] == [RecordingOptions(prefix="p1"), None, RecordingOptions(prefix="p2")]
    with pytest.raises(ConfigError, match="unknown key 'prefx'"):
        MultiLogger.from_config(LoggerConfig(loggers=("recording",), logger_cfg={"recording": {"prefx": "p"}}), registry,
                                log_dir=tmp_path)  # fmt: skip


def test_the_recipes_use_no_old_logger_key():
    recipes = sorted((Path(CPU_RECIPE).parent).glob("*.yaml"))
    assert len(recipes) >= 5
    for recipe in recipes:
        text = recipe.read_text()
        assert not any(old in text for old in ("wandb_project", "mlflow_tracking_uri", "mlflow_experiment")), recipe
