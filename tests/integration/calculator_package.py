"""examples/plugins/reinforge-calculator as if it were pip-installed, without pip: its sources and a dist-info
folder holding its entry point go on the path (sys.path in this process, PYTHONPATH for a subprocess), where
importlib.metadata finds the distribution as it finds an installed one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.integration.grpo_helpers import OFFLINE_ENV, REPO

PACKAGE = REPO / "examples" / "plugins" / "reinforge-calculator"
SOURCES = PACKAGE / "src"


def dist_info(folder: Path) -> Path:
    """A site folder holding reinforge_calculator-0.1.0.dist-info (its metadata and entry point)."""
    dist = folder / "site" / "reinforge_calculator-0.1.0.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: reinforge-calculator\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text("[reinforge]\ncalculator = reinforge_calculator.plugin\n")
    return folder / "site"


def install_in_process(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """For the rest of the test, every Registry.create() in this process finds the package's entry point."""
    monkeypatch.syspath_prepend(str(SOURCES))
    monkeypatch.syspath_prepend(str(dist_info(folder)))


def installed_env(folder: Path) -> dict[str, str]:
    """Environment variables under which a subprocess sees the package installed."""
    path = os.pathsep.join(p for p in (str(dist_info(folder)), str(SOURCES), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, **OFFLINE_ENV, "PYTHONPATH": path}
