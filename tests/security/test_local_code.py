"""Code in the working directory never runs by accident: a planted `math_verify.py` does not shadow
the package in the math workers, a local plugin file cannot shadow an installed module, and the
plugins.toml in use is the one the user named, the one beside --config, or the project root's,
and it is reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reinforge.cli.main import main
from reinforge.core.errors import PluginError
from reinforge.core.registry import Registry, RegistrySettings, find_project_file

PLANTED = """
import pathlib
pathlib.Path({marker!r}).write_text("planted module imported")
raise SystemExit("planted math_verify imported")
"""

TOY_PLUGIN = '''
from reinforge.core.hookspecs import hookimpl

@hookimpl
def reinforge_register_environments(register):
    register("toy_env", "collections:OrderedDict", description="a toy environment")
'''


def test_a_math_verify_file_in_the_working_directory_does_not_shadow_the_package(tmp_path, monkeypatch):
    pytest.importorskip("math_verify")
    from reinforge.environments.math import MathEnvironment, MathEnvironmentConfig

    marker = tmp_path / "planted-ran"
    (tmp_path / "math_verify.py").write_text(PLANTED.format(marker=str(marker)))
    monkeypatch.chdir(tmp_path)
    env = MathEnvironment(MathEnvironmentConfig(num_workers=1))
    try:
        step = env.step(
            [[{"role": "assistant", "content": "\\boxed{4}"}], [{"role": "assistant", "content": "\\boxed{5}"}]],
            [{"answer": "4"}, {"answer": "4"}],
        )
    finally:
        env.shutdown()
    assert step.rewards == [1.0, 0.0]
    assert not marker.exists()


def test_a_local_plugin_file_named_like_an_installed_module_is_refused(tmp_path):
    (tmp_path / "json.py").write_text("raise SystemExit('shadowing json')\n")
    (tmp_path / "plugins.toml").write_text('[plugins]\nlocal = ["json.py"]\n')
    with pytest.raises(PluginError, match=r"json\.py has the name of the module 'json'.*rename the file"):
        Registry.create(RegistrySettings(project_file=str(tmp_path / "plugins.toml"), load_entry_points=False))
    assert sys.modules["json"].__file__ != str(tmp_path / "json.py")


def test_the_project_folder_goes_last_on_sys_path(tmp_path, monkeypatch):
    (tmp_path / "toy_env_plugin.py").write_text(TOY_PLUGIN)
    (tmp_path / "plugins.toml").write_text('[plugins]\nlocal = ["toy_env_plugin.py"]\n')
    monkeypatch.setattr(sys, "path", list(sys.path))
    registry = Registry.create(RegistrySettings(project_file=str(tmp_path / "plugins.toml"), load_entry_points=False))
    assert registry.names("environment").count("toy_env") == 1
    assert sys.path.index(str(tmp_path)) == len(sys.path) - 1


def test_plugins_toml_beside_the_config_file_is_found_before_the_working_directory(tmp_path, monkeypatch):
    recipes, elsewhere = tmp_path / "recipes", tmp_path / "elsewhere"
    recipes.mkdir()
    elsewhere.mkdir()
    (recipes / "plugins.toml").write_text("[plugins]\n")
    (elsewhere / "plugins.toml").write_text("[plugins]\n")
    monkeypatch.delenv("REINFORGE_PLUGINS", raising=False)
    assert find_project_file(cwd=elsewhere, config_file=recipes / "run.yaml") == (recipes / "plugins.toml").resolve()
    assert find_project_file(cwd=elsewhere) == (elsewhere / "plugins.toml").resolve()
    assert find_project_file(cwd=tmp_path, config_file=tmp_path / "run.yaml") is None
    monkeypatch.setenv("REINFORGE_PLUGINS", str(elsewhere / "plugins.toml"))
    assert find_project_file(cwd=tmp_path, config_file=recipes / "run.yaml") == (elsewhere / "plugins.toml").resolve()


def test_plugins_list_reports_the_project_file_it_loaded(tmp_path, monkeypatch, capsys):
    (tmp_path / "plugins.toml").write_text("[plugins]\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REINFORGE_PLUGINS", raising=False)
    assert main(["plugins", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["project_file"] == str((tmp_path / "plugins.toml").resolve())
    assert main(["plugins", "list", "--kind", "logger"]) == 0
    assert f"project plugins: {(tmp_path / 'plugins.toml').resolve()}" in capsys.readouterr().out.replace("\n", "")


def test_an_unknown_name_points_at_plugins_toml_and_the_plugins_flag(tmp_path):
    (tmp_path / "run.yaml").write_text("algorithm: grpo\npolicy: {model_name: /m}\nenv: {name: toy_env}\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("REINFORGE_PLUGINS", None)
    done = subprocess.run(
        [sys.executable, "-m", "reinforge.cli.main", "config", "show", str(tmp_path / "run.yaml")],
        capture_output=True, text=True, cwd=tmp_path, env=env,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    message = " ".join(done.stderr.split())
    assert "unknown environment 'toy_env'" in message
    assert "--plugins FILE" in message and "REINFORGE_PLUGINS" in message and "next to the --config file" in message
