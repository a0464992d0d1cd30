"""Repository-wide pytest setup: the tiny-model kit's fixtures (tiny_model_dir, tiny_tokenizer)."""

import pytest

pytest_plugins = ["reinforge.testing.fixtures"]


@pytest.fixture(autouse=True)
def plugin_trust_store(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Each test gets an empty trust store of its own (`reinforge plugins trust`), never the user's."""
    folder = tmp_path_factory.mktemp("reinforge-config")
    monkeypatch.setenv("REINFORGE_CONFIG_DIR", str(folder))
    return folder / "trusted_plugins.json"
