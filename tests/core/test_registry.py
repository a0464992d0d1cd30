"""The plugin registry: sources, blocking, duplicates, unknown names, availability, broken plugins."""

from __future__ import annotations

import importlib.metadata
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from reinforge.core import plugin_trust
from reinforge.core.errors import PluginError
from reinforge.core.hookspecs import hookimpl
from reinforge.core.registry import Registry, RegistrySettings

EXAMPLE_PLUGIN_SRC = Path(__file__).resolve().parents[2] / "examples" / "plugins" / "reinforge-exact-match" / "src"
NO_ENTRY_POINTS = RegistrySettings(load_entry_points=False)


class FakeDistribution:
    """Just enough of importlib.metadata.Distribution for entry-point discovery."""

    def __init__(self, name: str, version: str, entry_points: list[importlib.metadata.EntryPoint]) -> None:
        self.metadata = {"name": name}
        self.version = version
        self.entry_points = entry_points


def fake_distributions(monkeypatch: pytest.MonkeyPatch, *dists: FakeDistribution) -> None:
    monkeypatch.setattr(importlib.metadata, "distributions", lambda: list(dists))


def write_module(folder: Path, name: str, body: str) -> Path:
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    return path


ENV_PLUGIN = """
from reinforge.core.hookspecs import hookimpl

@hookimpl
def reinforge_register_environments(register):
    register("{name}", "collections:OrderedDict", description="a local environment")
"""


def test_builtins_are_listed_by_kind():
    registry = Registry.create(NO_ENTRY_POINTS)
    assert "dtensor" in registry.names("training_backend")
    assert "hf" in registry.names("generation_backend")
    assert "grpo" in registry.names("algorithm")
    assert "math" in registry.names("environment")
    assert all(s.source.origin == "built-in" for s in registry.specs())


def test_entry_point_plugin_is_found_with_package_and_version(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE_PLUGIN_SRC))
    ep = importlib.metadata.EntryPoint("exact_match", "reinforge_exact_match.plugin", "reinforge")
    other = importlib.metadata.EntryPoint("unrelated", "json", "console_scripts")
    fake_distributions(monkeypatch, FakeDistribution("reinforge-exact-match", "0.2.0", [ep, other]))
    registry = Registry.create(RegistrySettings())
    spec = registry.get("environment", "exact_match")
    assert str(spec.source) == "reinforge-exact-match==0.2.0"
    env_cls = registry.resolve("environment", "exact_match")
    assert env_cls.__name__ == "ExactMatchEnvironment"
    assert registry.config_class("environment", "exact_match").__name__ == "ExactMatchConfig"


def test_local_plugin_from_project_file(tmp_path):
    write_module(tmp_path, "my_envs", ENV_PLUGIN.format(name="local_env"))
    (tmp_path / "plugins.toml").write_text('[plugins]\nlocal = ["my_envs.py"]\n')
    registry = Registry.create(RegistrySettings(project_file=str(tmp_path / "plugins.toml"), load_entry_points=False))
    spec = registry.get("environment", "local_env")
    assert spec.source.origin == "local" and spec.source.detail.endswith("my_envs.py")


def test_project_file_found_in_working_directory(tmp_path, monkeypatch):
    write_module(tmp_path, "cwd_envs", ENV_PLUGIN.format(name="cwd_env"))
    (tmp_path / "plugins.toml").write_text('[plugins]\nlocal = ["cwd_envs.py"]\n')
    plugin_trust.trust(tmp_path / "plugins.toml")  # found, not named: loaded once trusted
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REINFORGE_PLUGINS", raising=False)
    assert "cwd_env" in Registry.create().names("environment")


def test_blocked_names_are_absent(tmp_path):
    (tmp_path / "plugins.toml").write_text('[plugins]\nblock = ["hf", "reinforge.plugins.environments"]\n')
    registry = Registry.create(RegistrySettings(project_file=str(tmp_path / "plugins.toml"), load_entry_points=False))
    assert "hf" not in registry.names("generation_backend")
    assert registry.names("environment") == []  # the whole module was blocked
    assert "dtensor" in registry.names("training_backend")


def test_duplicate_names_fail_naming_both_sources(tmp_path):
    write_module(tmp_path, "dup_a", ENV_PLUGIN.format(name="same"))
    write_module(tmp_path, "dup_b", ENV_PLUGIN.format(name="same"))
    (tmp_path / "plugins.toml").write_text('[plugins]\nlocal = ["dup_a.py", "dup_b.py"]\n')
    with pytest.raises(PluginError) as err:
        Registry.create(RegistrySettings(project_file=str(tmp_path / "plugins.toml"), load_entry_points=False))
    message = str(err.value)
    assert "'same'" in message and "dup_a" in message and "dup_b" in message


def test_unknown_name_suggests_the_closest_and_lists_all():
    registry = Registry.create(NO_ENTRY_POINTS)
    with pytest.raises(PluginError) as err:
        registry.get("generation_backend", "hff")
    assert "unknown generation backend 'hff'; did you mean 'hf'?" in str(err.value)
    assert "known: " + ", ".join(registry.names("generation_backend")) in str(err.value)


def test_unknown_kind_is_an_error():
    with pytest.raises(PluginError, match="unknown plugin kind 'enviroment'; did you mean 'environment'"):
        Registry.create(NO_ENTRY_POINTS).names("enviroment")


class NeedsMissingPackage:
    @hookimpl
    def reinforge_register_generation_backends(self, register):
        register("fancy", "fancy_engine_xyz.api:Engine", requires=("fancy_engine_xyz",), extra="fancy")


def test_missing_requirement_listed_as_unavailable_with_install_command():
    registry = Registry.create(NO_ENTRY_POINTS, plugins=[("fancy-plugin", NeedsMissingPackage())])
    spec = registry.get("generation_backend", "fancy")
    assert not spec.available and spec.missing_requirements() == ["fancy_engine_xyz"]
    with pytest.raises(PluginError) as err:
        registry.resolve("generation_backend", "fancy")
    assert "pip install fancy_engine_xyz" in str(err.value)


def test_builtin_missing_requirement_names_the_reinforge_extra(monkeypatch):
    from reinforge.core.registry import PluginSource, PluginSpec

    spec = PluginSpec("generation_backend", "x", "a:b", None, ("not_here_pkg",), "vllm", "", PluginSource("built-in", "m"))
    assert spec.install_hint() == "pip install 'reinforge[vllm]'"


def test_plugin_module_raising_on_import_is_reported_and_others_load(tmp_path):
    write_module(tmp_path, "broken_plugin", "raise RuntimeError('boom at import')\n")
    write_module(tmp_path, "fine_plugin", ENV_PLUGIN.format(name="fine_env"))
    (tmp_path / "plugins.toml").write_text('[plugins]\nlocal = ["broken_plugin.py", "fine_plugin.py"]\n')
    registry = Registry.create(RegistrySettings(project_file=str(tmp_path / "plugins.toml"), load_entry_points=False))
    assert "fine_env" in registry.names("environment")
    [failure] = registry.load_failures
    assert failure.source.module == "broken_plugin" and "boom at import" in failure.error


def test_entry_point_raising_on_import_is_reported(monkeypatch):
    ep = importlib.metadata.EntryPoint("broken", "no_such_module_abc", "reinforge")
    fake_distributions(monkeypatch, FakeDistribution("broken-pkg", "1.0", [ep]))
    registry = Registry.create(RegistrySettings())
    assert [f.source.detail for f in registry.load_failures] == ["broken-pkg==1.0"]
    assert "hf" in registry.names("generation_backend")


def test_misspelled_hook_fails_naming_the_plugin(tmp_path):
    write_module(
        tmp_path,
        "typo_plugin",
        """
        from reinforge.core.hookspecs import hookimpl

        @hookimpl
        def reinforge_register_enviroments(register):
            pass
        """,
    )
    (tmp_path / "plugins.toml").write_text('[plugins]\nlocal = ["typo_plugin.py"]\n')
    with pytest.raises(PluginError) as err:
        Registry.create(RegistrySettings(project_file=str(tmp_path / "plugins.toml"), load_entry_points=False))
    assert "typo_plugin" in str(err.value) and "reinforge_register_enviroments" in str(err.value)


def test_bad_project_file_keys_are_reported(tmp_path):
    (tmp_path / "plugins.toml").write_text('[plugins]\nlocals = ["x.py"]\n')
    with pytest.raises(PluginError, match="unknown keys"):
        Registry.create(RegistrySettings(project_file=str(tmp_path / "plugins.toml"), load_entry_points=False))


def test_missing_local_file_is_reported(tmp_path):
    (tmp_path / "plugins.toml").write_text('[plugins]\nlocal = ["nowhere.py"]\n')
    with pytest.raises(PluginError, match="nowhere.py"):
        Registry.create(RegistrySettings(project_file=str(tmp_path / "plugins.toml"), load_entry_points=False))


def test_explicit_project_file_must_exist(tmp_path):
    with pytest.raises(PluginError, match="does not exist"):
        Registry.create(project_file=tmp_path / "missing.toml")


def test_settings_rebuild_the_same_registry_in_another_process(tmp_path):
    write_module(tmp_path, "worker_envs", ENV_PLUGIN.format(name="worker_env"))
    (tmp_path / "plugins.toml").write_text('[plugins]\nlocal = ["worker_envs.py"]\nblock = ["hf"]\n')
    registry = Registry.create(project_file=tmp_path / "plugins.toml")
    blob = tmp_path / "settings.pkl"
    blob.write_bytes(pickle.dumps(registry.settings))
    script = textwrap.dedent(
        f"""
        import pickle, json
        from reinforge.core.registry import Registry
        settings = pickle.loads(open({str(blob)!r}, "rb").read())
        r = Registry.create(settings)
        print(json.dumps(sorted((s.kind, s.name, str(s.source)) for s in r.specs())))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd="/", check=True).stdout
    import json

    assert json.loads(out) == sorted([s.kind, s.name, str(s.source)] for s in registry.specs())
    assert ["environment", "worker_env"] in [row[:2] for row in json.loads(out)]
