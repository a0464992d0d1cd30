"""The example plugin packages under examples/plugins, loaded as installed packages are: through a (faked)
distribution's entry point, so tests never depend on what happens to be installed."""

from __future__ import annotations

import importlib.metadata

import pytest

from reinforge.core.registry import Registry, RegistrySettings
from tests.integration.grpo_helpers import REPO

WORD_GUESS_SRC = REPO / "examples" / "plugins" / "reinforge-word-guess" / "src"


class FakeDistribution:
    """Just enough of importlib.metadata.Distribution for entry-point discovery."""

    def __init__(self, name: str, version: str, entry_points: list[importlib.metadata.EntryPoint]) -> None:
        self.metadata = {"name": name}
        self.version = version
        self.entry_points = entry_points


def install_word_guess(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if `pip install ./examples/plugins/reinforge-word-guess` had run (and nothing else were installed)."""
    monkeypatch.syspath_prepend(str(WORD_GUESS_SRC))
    entry_point = importlib.metadata.EntryPoint("word_guess", "reinforge_word_guess.plugin", "reinforge")
    dist = FakeDistribution("reinforge-word-guess", "0.1.0", [entry_point])
    monkeypatch.setattr(importlib.metadata, "distributions", lambda: [dist])


def word_guess_registry(monkeypatch: pytest.MonkeyPatch) -> Registry:
    install_word_guess(monkeypatch)
    return Registry.create(RegistrySettings())


def recipe_registry(recipe_text: str) -> Registry | None:
    """For validating recipes: a registry with the word_guess package's module when the recipe names it."""
    if "word_guess" not in recipe_text:
        return None
    settings = RegistrySettings(load_entry_points=False, extra_modules=("reinforge_word_guess.plugin",), sys_path=(str(WORD_GUESS_SRC),))
    return Registry.create(settings)
