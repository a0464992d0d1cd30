"""A damaged latest checkpoint (truncated or missing shard, corrupt metadata, missing dataloader or
trainer state) is skipped with a warning naming it and what is wrong; the run resumes from the newest
intact one and ends exactly where the undamaged run ended."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.faults.harness import STEPS, assert_same_run, published_checkpoints_are_intact, run

pytestmark = pytest.mark.integration
LONG = os.environ.get("REINFORGE_FAULTS_LONG") == "1"


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def scramble(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, same size
    path.write_bytes(bytes(data))


DAMAGE = {
    "truncated shard": (lambda step: truncate(step / "policy/dcp/__0_0.distcp"), "policy/dcp/__0_0.distcp has"),
    "corrupt metadata": (lambda step: scramble(step / "policy/dcp/.metadata"), "policy/dcp/.metadata does not match its SHA-256"),
    "missing dataloader state": (lambda step: (step / "dataloader.json").unlink(), "dataloader.json is missing"),
    "missing shard": (lambda step: (step / "policy/dcp/__0_0.distcp").unlink(), "policy/dcp/__0_0.distcp is missing"),
    "missing trainer state": (lambda step: (step / "trainer_state.json").unlink(), "trainer_state.json is missing"),
}
CI_KINDS = ("truncated shard", "corrupt metadata", "missing dataloader state")


@pytest.mark.parametrize("kind", [k if k in CI_KINDS or LONG else pytest.param(k, marks=pytest.mark.skip("long mode")) for k in DAMAGE])
def test_damaged_latest_checkpoint_falls_back_to_the_newest_intact_one(kind, tiny_model_dir, reference, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    shutil.copytree(reference / "ckpt", out / "ckpt")
    shutil.copytree(reference / "logs", out / "logs")
    damage, problem = DAMAGE[kind]
    damage(out / "ckpt" / f"step_{STEPS}")

    assert run(tiny_model_dir, out) == 0, (out / "stderr.log").read_text()[-3000:]
    stderr = " ".join((out / "stderr.log").read_text().split())
    assert f"skipping damaged checkpoint {out / 'ckpt' / f'step_{STEPS}'}: {problem}" in stderr
    assert f"resuming from step {STEPS - 1} of {out / 'ckpt'}; pass checkpointing.resume=false to start over" in stderr
    assert published_checkpoints_are_intact(out / "ckpt") == [STEPS - 1, STEPS]  # step 6 saved again, whole
    assert_same_run(reference, out)
