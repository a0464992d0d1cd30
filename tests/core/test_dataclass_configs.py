"""A plugin's config class may be a `@dataclass`: YAML, keyword arguments and `plugins show` read it like an
attrs class; a class that is neither is refused with one paragraph naming it."""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import reinforge as rf
from reinforge.cli.main import main
from reinforge.core.config import ConfigError, describe_fields, dump_yaml, load_yaml, structure
from reinforge.core.errors import PluginError
from reinforge.core.registry import Registry, RegistrySettings

PLUGIN = '''
from dataclasses import dataclass, field

import reinforge as rf


@dataclass(frozen=True)
class ThresholdConfig:
    threshold: float = field(default=0.5, metadata={"doc": "reward 1 above it"})
    tags: tuple[str, ...] = ()
    scale: float = 1.0


@dataclass
class NeedsPath:
    path: str = field(metadata={"doc": "where the answers are"})


class NotAConfig:
    threshold: float = 0.5


class ThresholdEnvironment:
    def __init__(self, config=None):
        self.config = config or ThresholdConfig()

    def step(self, conversations, metadata):
        n = len(conversations)
        return rf.EnvironmentStep(rewards=[self.config.scale] * n, observations=[None] * n, done=[True] * n)

    def shutdown(self):
        pass


@rf.hookimpl
def reinforge_register_environments(register):
    register("threshold", "dc_plugin:ThresholdEnvironment", config="dc_plugin:ThresholdConfig")
    register("needs_path", "dc_plugin:ThresholdEnvironment", config="dc_plugin:NeedsPath")
    register("not_a_config", "dc_plugin:ThresholdEnvironment", config="dc_plugin:NotAConfig")
'''


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project plugins.toml with the plugin above, found by every Registry.create() through REINFORGE_PLUGINS."""
    (tmp_path / "dc_plugin.py").write_text(textwrap.dedent(PLUGIN))
    toml = tmp_path / "plugins.toml"
    toml.write_text('[plugins]\nlocal = ["dc_plugin.py"]\n')
    monkeypatch.setenv("REINFORGE_PLUGINS", str(toml))
    return toml


def registry(project: Path) -> Registry:
    return Registry.create(RegistrySettings(project_file=str(project), load_entry_points=False))


def test_a_dataclass_config_is_structured_with_the_same_checks_as_an_attrs_one(project):
    cls = registry(project).config_class("environment", "threshold")
    config = structure({"threshold": 0.75, "tags": ["a", "b"]}, cls)
    assert (config.threshold, config.tags, config.scale) == (0.75, ("a", "b"), 1.0)
    with pytest.raises(ConfigError) as err:
        structure({"treshold": 0.75, "scale": "big"}, cls)
    text = str(err.value)
    assert "unknown key 'treshold'; did you mean 'threshold'?" in text and "expected a number, got str 'big' @ scale" in text
    with pytest.raises(ConfigError, match="required setting is missing @ path"):
        structure({}, registry(project).config_class("environment", "needs_path"))


def test_a_dataclass_config_from_yaml_round_trips_through_the_saved_config(project, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("algorithm: grpo\npolicy: {model_name: m/}\nenv: {name: threshold, env_cfg: {threshold: 0.25}}\n")
    plugins = registry(project)
    config = rf.load_config(recipe, registry=plugins)
    assert config.env.env_cfg.threshold == 0.25 and type(config.env.env_cfg).__name__ == "ThresholdConfig"
    saved = tmp_path / "saved.yaml"
    saved.write_text(dump_yaml(config))  # what every checkpoint holds
    assert load_yaml(saved)["env"]["env_cfg"] == {"threshold": 0.25, "tags": [], "scale": 1.0}
    assert rf.load_config(saved, registry=plugins).env == config.env


def test_keyword_arguments_reach_a_dataclass_config(project):
    spec = rf.environments.Registered("threshold", threshold=0.9, scale=2.0)
    assert spec.env.env_cfg.threshold == 0.9 and spec.env.env_cfg.scale == 2.0
    with pytest.raises(rf.ReinforgeError, match="unknown key 'scal'; did you mean 'scale'"):
        rf.environments.Registered("threshold", scal=2.0)


def test_plugins_show_lists_a_dataclass_configs_fields_with_their_docs(project, capsys):
    assert main(["plugins", "show", "threshold", "--json"]) == 0
    fields = {f["name"]: f for f in json.loads(capsys.readouterr().out)["fields"]}
    assert fields["threshold"] == {"name": "threshold", "type": "float", "default": "0.5", "doc": "reward 1 above it"}
    assert fields["tags"]["default"] == "()" and fields["scale"]["doc"] == ""
    assert describe_fields(registry(project).config_class("environment", "needs_path"))[0]["default"] == "(required)"


def test_a_config_class_that_is_neither_attrs_nor_a_dataclass_is_named(project, capsys):
    with pytest.raises(PluginError) as err:
        registry(project).config_class("environment", "not_a_config")
    assert "the config class 'NotAConfig' of environment 'not_a_config'" in str(err.value)
    assert "@dataclasses.dataclass" in str(err.value)
    assert main(["plugins", "show", "not_a_config"]) == 1  # one paragraph, no traceback
    assert "NotAConfig" in capsys.readouterr().err


@dataclass(frozen=True)
class Inner:
    depth: int = 2


@dataclass(frozen=True)
class Outer:
    inner: Inner = field(default_factory=Inner)
    names: list[str] = field(default_factory=list)


def test_nested_dataclasses_and_factories():
    assert structure({}, Outer) == Outer()
    assert structure({"inner": {"depth": 5}, "names": ["x"]}, Outer) == Outer(Inner(5), ["x"])
    with pytest.raises(ConfigError, match="expected an integer, got str 'deep' @ inner.depth"):
        structure({"inner": {"depth": "deep"}}, Outer)
    assert [row["name"] for row in describe_fields(Outer)] == ["inner.depth", "names"]
