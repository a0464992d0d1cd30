"""The uninterrupted reference run every fault test compares against (built once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.harness import STEPS, published_checkpoints_are_intact, run


@pytest.fixture(scope="session")
def reference(tiny_model_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference")
    assert run(tiny_model_dir, out) == 0, (out / "stderr.log").read_text()[-3000:]
    assert published_checkpoints_are_intact(out / "ckpt") == [STEPS - 1, STEPS]
    return out
