"""The bad-input corpus, built once per session and shared by the in-process and console-script tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from reinforge.testing.fixtures import tiny_model_dir  # noqa: F401 - the fixture, for this folder's tests
from tests.bad_inputs.corpus import build_corpus


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, str]:
    """`$C` the corpus folder, `$M` the tiny model, `$B` the base config, for `string.Template`."""
    root = tmp_path_factory.mktemp("bad-inputs")
    build_corpus(root, tiny_model_dir)
    return {"C": str(root), "M": str(tiny_model_dir), "B": str(root / "base.yaml")}
