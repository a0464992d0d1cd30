"""A plugins.toml found in the folder a user stands in (or beside the recipe) runs no code until trusted.

A downloaded recipe folder holds `plugins.toml` + a module that writes a marker file when imported.
Through each entry point (`plugins list`, `config show`, `train`, `eval`, `Trainer.from_config`) the
marker is never written while the folder is untrusted, and is written once `reinforge plugins trust`
recorded it; editing the trusted module makes it untrusted again. `--plugins` and REINFORGE_PLUGINS
are consent for one run. The trust store is the test's own (the root conftest's REINFORGE_CONFIG_DIR).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from reinforge.core import plugin_trust
from reinforge.core.errors import PluginError
from tests.bad_inputs.corpus import BASE_CONFIG

PLANTED = """
import pathlib
pathlib.Path(__file__).with_name("MARKER").write_text("the planted module ran")
"""


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    """A recipe folder as someone might download it: a recipe, a plugins.toml and the module it names."""
    folder = tmp_path / "recipe"
    folder.mkdir()
    (folder / "evil.py").write_text(PLANTED)
    (folder / "plugins.toml").write_text('[plugins]\nlocal = ["evil.py"]\n')
    config = yaml.safe_dump(BASE_CONFIG, sort_keys=False).replace("$M", str(tmp_path / "no-model")).replace("$C", str(tmp_path))
    (folder / "recipe.yaml").write_text(config)
    return folder


def reinforge(folder: Path, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`reinforge ARGV` run from inside `folder`, as a user who cd'ed there would."""
    environ = {k: v for k, v in os.environ.items() if k != "REINFORGE_PLUGINS"}
    environ.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **(env or {})})
    return subprocess.run([sys.executable, "-m", "reinforge.cli.main", *argv], capture_output=True, text=True, cwd=folder, env=environ)


# Each entry point; the model folder does not exist, so train and eval stop right after loading plugins.
ENTRY_POINTS = {
    "plugins list": ("plugins", "list"),
    "config show": ("config", "show", "recipe.yaml"),
    "train": ("train", "--config", "recipe.yaml"),
    "eval": ("eval", "generation.model_name=/nonexistent/model"),
}


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_a_planted_manifest_runs_nothing_until_trusted_then_runs(entry, recipe):
    argv = ENTRY_POINTS[entry]
    refused = reinforge(recipe, *argv)
    assert not (recipe / "MARKER").exists(), refused.stderr[-2000:]
    assert "Traceback" not in refused.stderr
    if entry == "plugins list":  # shown, not imported
        assert refused.returncode == 0, refused.stderr
        flat = " ".join(refused.stdout.split())
        assert "untrusted" in flat and "evil" in flat and str(recipe / "plugins.toml") in flat
    else:
        assert refused.returncode == 1
        flat = " ".join(refused.stderr.split())
        assert f"refusing to load the project plugin file {recipe / 'plugins.toml'}: it is not trusted" in flat
        assert "(evil.py)" in flat and f"reinforge plugins trust {recipe / 'plugins.toml'}" in flat

    trusted = reinforge(recipe, "plugins", "trust")
    assert trusted.returncode == 0, trusted.stderr
    assert not (recipe / "MARKER").exists()  # trusting reads and hashes; it imports nothing
    ran = reinforge(recipe, *argv)
    assert (recipe / "MARKER").exists(), ran.stderr[-2000:]
    assert "refusing to load" not in ran.stderr


def test_editing_a_trusted_module_makes_it_untrusted_again(recipe):
    plugin_trust.trust(recipe / "plugins.toml")
    assert reinforge(recipe, "config", "show", "recipe.yaml").returncode == 0
    (recipe / "MARKER").unlink()
    (recipe / "evil.py").write_text(PLANTED + "\n# one more line\n")
    refused = reinforge(recipe, "config", "show", "recipe.yaml")
    assert refused.returncode == 1 and not (recipe / "MARKER").exists()
    assert "it changed since you trusted it (evil.py differs)" in " ".join(refused.stderr.split())
    # so does naming one more module in the manifest
    plugin_trust.trust(recipe / "plugins.toml")
    (recipe / "other.py").write_text(PLANTED)
    (recipe / "plugins.toml").write_text('[plugins]\nlocal = ["evil.py", "other.py"]\n')
    assert reinforge(recipe, "plugins", "list", "--json").returncode == 0
    assert not (recipe / "MARKER").exists()


def test_the_plugins_flag_and_the_variable_are_consent_for_one_run(recipe):
    manifest = str(recipe / "plugins.toml")
    assert reinforge(recipe, "--plugins", manifest, "config", "show", "recipe.yaml").returncode == 0
    assert (recipe / "MARKER").exists()
    (recipe / "MARKER").unlink()
    assert reinforge(recipe, "config", "show", "recipe.yaml", env={"REINFORGE_PLUGINS": manifest}).returncode == 0
    assert (recipe / "MARKER").exists()
    (recipe / "MARKER").unlink()
    assert reinforge(recipe, "config", "show", "recipe.yaml").returncode == 1  # nothing was recorded
    assert not (recipe / "MARKER").exists()
    assert not plugin_trust.store_path().exists()


def test_a_manifest_beside_the_config_needs_trust_too(recipe, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = reinforge(elsewhere, "config", "show", str(recipe / "recipe.yaml"))
    assert done.returncode == 1 and "refusing to load" in done.stderr and not (recipe / "MARKER").exists()


def test_trainer_from_config_refuses_an_untrusted_working_directory(recipe, tmp_path, monkeypatch):
    from reinforge.core.load import load_config
    from reinforge.trainer import Trainer

    monkeypatch.delenv("REINFORGE_PLUGINS", raising=False)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    # log_dir under a file: from_config stops at its writability check, right after the registry is built
    config = load_config(recipe / "recipe.yaml", [f"logger.log_dir={blocker / 'logs'}"], plugin_registry())
    monkeypatch.chdir(recipe)
    with pytest.raises(PluginError, match="refusing to load the project plugin file .*plugins.toml: it is not trusted"):
        Trainer.from_config(config)
    assert not (recipe / "MARKER").exists()
    plugin_trust.trust(recipe / "plugins.toml")
    with pytest.raises(Exception, match="logger.log_dir"):
        Trainer.from_config(config)
    assert (recipe / "MARKER").exists()


def test_trust_records_the_manifest_and_every_module_and_revoke_forgets_it(recipe):
    done = reinforge(recipe, "plugins", "trust", str(recipe))
    assert done.returncode == 0, done.stderr
    store = json.loads(plugin_trust.store_path().read_text())
    files = store["trusted"][str(recipe / "plugins.toml")]
    assert set(files) == {str(recipe / "plugins.toml"), str(recipe / "evil.py")}
    assert oct(plugin_trust.store_path().stat().st_mode & 0o777) == "0o600"
    assert reinforge(recipe, "plugins", "trust", "--revoke").returncode == 0
    assert plugin_trust.untrusted_reason(recipe / "plugins.toml") == "it is not trusted on this machine"


def test_a_manifest_without_local_modules_imports_nothing_and_needs_no_trust(tmp_path):
    (tmp_path / "plugins.toml").write_text('[plugins]\nblock = ["wandb"]\n')
    assert plugin_trust.untrusted_reason(tmp_path / "plugins.toml") is None


def plugin_registry():
    """A registry with no project file (the config is loaded from outside the recipe folder's trust)."""
    from reinforge.core.registry import Registry, RegistrySettings

    return Registry.create(RegistrySettings())
