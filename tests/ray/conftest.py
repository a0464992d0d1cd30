"""Fixtures shared by the Ray tests: the tiny model and a registry with tests/ray's plugin module."""

from __future__ import annotations

from pathlib import Path

import pytest

from reinforge.core.registry import Registry, RegistrySettings
from reinforge.models.tiny_model import build_model

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("ray-tiny") / "model", size="tiny", seed=0)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """The built-ins plus tests/ray's plugin module (e.g. the raytest_checksum environment), declared the way a
    user's project declares a local module, so the workers rebuild it the same way."""
    folder = tmp_path_factory.mktemp("project")
    (folder / "plugins.toml").write_text(f'[plugins]\nlocal = ["{HERE / "raytest_plugins.py"}"]\n')
    return Registry.create(RegistrySettings(project_file=str(folder / "plugins.toml"), load_entry_points=False))
