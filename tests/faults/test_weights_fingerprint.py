"""The run fingerprint covers the weights: a run of another model folder of the same architecture (same
config.json, same tokenizer) does not continue a checkpoint trained from the first one, unless forced.

The two folders are the tiny-model kit's seeds 0 and 1: byte-identical config and tokenizer files,
different weights. Before the fingerprint hashed the weights, the second run printed "resuming from
step 1" and trained on from the first model's weights.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest

from reinforge.core import weights_fingerprint
from reinforge.core.errors import ReinforgeError
from reinforge.core.load import load_config
from reinforge.core.weights_fingerprint import weights_digest, weights_record
from reinforge.testing import build_model
from reinforge.trainer import Trainer
from tests.integration.grpo_helpers import CPU_RECIPE, tiny_overrides

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def seed1_model_dir(tmp_path_factory) -> Path:
    return build_model(tmp_path_factory.mktemp("tiny-seed1") / "model", size="tiny", seed=1)


def trainer(model_dir: Path, out: Path, steps: int, *extra: str) -> Trainer:
    config = load_config(CPU_RECIPE, tiny_overrides(model_dir, out, steps=steps, extra=("checkpointing.save_period=1", *extra)))
    return Trainer.from_config(config)


def test_the_two_models_differ_only_in_their_weights(tiny_model_dir, seed1_model_dir):
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (tiny_model_dir / name).read_bytes() == (seed1_model_dir / name).read_bytes(), name
    assert weights_digest(tiny_model_dir) != weights_digest(seed1_model_dir)


def test_a_checkpoint_of_another_model_folder_is_refused_naming_both_unless_forced(
    tiny_model_dir, seed1_model_dir, tmp_path, capsys, monkeypatch
):
    reads = []
    real = weights_fingerprint._file_digest
    monkeypatch.setattr(weights_fingerprint, "_file_digest", lambda f: reads.append(f.parent) or real(f))
    trainer(tiny_model_dir, tmp_path, 1).fit()
    assert reads == [tiny_model_dir]  # computed once for the run, though saved with every checkpoint
    again = trainer(tiny_model_dir, tmp_path, 2)
    again.fit()
    assert again.step == 2 and reads == [tiny_model_dir]  # the resume reused the checkpoint's record: same stamp
    capsys.readouterr()

    other = trainer(seed1_model_dir, tmp_path, 3)
    with pytest.raises(ReinforgeError) as refused:
        other.fit()
    message = " ".join(str(refused.value).split())
    assert f"{tmp_path / 'ckpt' / 'step_2'} belongs to another run: weights: " in message
    assert f"trained from the model folder {tiny_model_dir}; this run loads {seed1_model_dir}" in message
    assert "checkpointing.resume=force" in message
    assert other.step == 0 and "resuming from" not in capsys.readouterr().err

    forced = trainer(seed1_model_dir, tmp_path, 3, "checkpointing.resume=force")
    forced.fit()
    assert forced.step == 3


def test_the_same_weights_in_a_moved_folder_are_the_same_model(tiny_model_dir, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(tiny_model_dir, moved)
    assert weights_digest(moved) == weights_digest(tiny_model_dir)
    data = bytearray((moved / "model.safetensors").read_bytes())
    data[-1] ^= 0x01  # the last byte of the last tensor
    (moved / "model.safetensors").write_bytes(bytes(data))
    assert weights_digest(moved) != weights_digest(tiny_model_dir)  # small files are hashed whole


def test_a_large_file_is_sampled_and_a_record_is_reused_only_for_the_same_stamp(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    header = b'{"w": {"dtype": "F32", "shape": [5242880], "data_offsets": [0, 20971520]}}'
    file = model / "model.safetensors"
    file.write_bytes(struct.pack("<Q", len(header)) + header + bytes(20 << 20))
    first = weights_record(model)
    assert first.digest == weights_digest(model) and first.stamp == {"model.safetensors": [file.stat().st_size, file.stat().st_mtime_ns]}
    assert weights_record(model, {"digest": "sha256:recorded", "stamp": first.stamp}).digest == "sha256:recorded"
    with file.open("r+b") as handle:  # a change inside a sampled block (the first data block)
        handle.seek(8 + len(header) + 10)
        handle.write(b"\x01")
    assert weights_digest(model) != first.digest
    changed = weights_record(model, {"digest": "sha256:recorded", "stamp": first.stamp})
    assert changed.digest == weights_digest(model)  # the stamp moved on: read again, the record is not trusted
