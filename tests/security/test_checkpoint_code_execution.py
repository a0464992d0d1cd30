"""A checkpoint folder cannot run code: crafted pickles in `trainer_state.pt` or DCP's `.metadata`
(or in a DCP byte entry) never execute, through resume or `reinforge convert`, with or without
a manifest forged to match them. Each payload would write a marker file; the marker must not exist."""

from __future__ import annotations

import io
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reinforge.backends.training.safe_dcp import SafeLoadPlanner, read_dcp_metadata
from reinforge.core.checkpoint_manifest import MANIFEST, verify_checkpoint, write_manifest
from reinforge.core.errors import ReinforgeError
from reinforge.core.load import load_config
from reinforge.trainer import Trainer
from tests.integration.grpo_helpers import CPU_RECIPE, OFFLINE_ENV, REINFORGE, tiny_overrides

pytestmark = pytest.mark.integration


class Payload:
    """Unpickling this calls `exec`, which writes the marker: what an attacker's file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (exec, (f"open({str(self.marker)!r}, 'w').write('code ran')",))


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory) -> Path:
    """A one-step GRPO run with its checkpoint step_1 (copied per test)."""
    out = tmp_path_factory.mktemp("trained")
    config = load_config(CPU_RECIPE, tiny_overrides(tiny_model_dir, out, steps=1, extra=("checkpointing.save_period=1",)))
    Trainer.from_config(config).fit()
    assert verify_checkpoint(out / "ckpt" / "step_1") == []
    return out


@pytest.fixture
def run_dir(trained, tmp_path) -> Path:
    shutil.copytree(trained / "ckpt", tmp_path / "ckpt")
    return tmp_path


def resume(tiny_model_dir, run_dir: Path, steps: int = 2) -> Trainer:
    config = load_config(CPU_RECIPE, tiny_overrides(tiny_model_dir, run_dir, steps=steps, extra=("checkpointing.save_period=1",)))
    trainer = Trainer.from_config(config)
    trainer.fit()
    return trainer


def convert(run_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    step = run_dir / "ckpt" / "step_1"
    return subprocess.run(
        [REINFORGE, "convert", f"--dcp-ckpt-path={step / 'policy'}", f"--hf-ckpt-path={run_dir / 'hf'}", *extra],
        capture_output=True, text=True, env={**os.environ, **OFFLINE_ENV},
    )


def plant_trainer_state(step: Path, marker: Path) -> None:
    torch.save({"algorithm": {"policy_version": Payload(marker)}, "rng": {}}, step / "trainer_state.pt")


def plant_metadata(step: Path, marker: Path) -> None:
    (step / "policy" / "dcp" / ".metadata").write_bytes(pickle.dumps(Payload(marker)))


def test_a_planted_trainer_state_pt_is_never_loaded_and_the_checkpoint_is_refused(tiny_model_dir, run_dir):
    marker = run_dir / "marker"
    plant_trainer_state(run_dir / "ckpt" / "step_1", marker)
    with pytest.raises(ReinforgeError, match=r"no intact checkpoint .*trainer_state\.pt is not listed in the manifest"):
        resume(tiny_model_dir, run_dir)
    assert not marker.exists()


def test_with_a_forged_manifest_the_trainer_state_pt_is_still_never_read(tiny_model_dir, run_dir):
    marker = run_dir / "marker"
    step = run_dir / "ckpt" / "step_1"
    plant_trainer_state(step, marker)
    write_manifest(step)  # the attacker rewrites the manifest to match
    trainer = resume(tiny_model_dir, run_dir)
    assert trainer.step == 2  # resumed from step 1 (the JSON state) and trained on
    assert not marker.exists()


def test_a_crafted_dcp_metadata_runs_nothing_through_resume_or_convert(tiny_model_dir, run_dir):
    marker = run_dir / "marker"
    step = run_dir / "ckpt" / "step_1"
    plant_metadata(step, marker)
    with pytest.raises(ReinforgeError, match="damaged or was altered|no intact checkpoint"):
        resume(tiny_model_dir, run_dir)
    done = convert(run_dir)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert re.search(r"policy/dcp/\.metadata has \d+ bytes, the manifest says \d+", " ".join(done.stderr.split()))
    assert not marker.exists()

    write_manifest(step)  # forged to match: the allow-list unpickler is the wall now
    with pytest.raises(ReinforgeError, match=r"builtins\.exec is not allowed in a checkpoint's \.metadata"):
        resume(tiny_model_dir, run_dir)
    done = convert(run_dir)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "builtins.exec is not allowed" in " ".join(done.stderr.split())
    assert not marker.exists()


def test_an_old_checkpoint_without_manifest_is_refused_and_never_unpickled(tiny_model_dir, run_dir):
    marker = run_dir / "marker"
    step = run_dir / "ckpt" / "step_1"
    (step / MANIFEST).unlink()
    plant_trainer_state(step, marker)  # the layout before manifests: a pickled trainer_state.pt
    with pytest.raises(ReinforgeError, match=r"no manifest\.json .*Nothing in them was loaded"):
        resume(tiny_model_dir, run_dir)
    done = convert(run_dir)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "--allow-unverified" in done.stderr
    plant_metadata(step, marker)
    done = convert(run_dir, "--allow-unverified")  # the opt-in still never unpickles code
    assert done.returncode == 1 and "builtins.exec is not allowed" in " ".join(done.stderr.split())
    assert not marker.exists()


def test_a_genuine_checkpoint_converts(run_dir):
    done = convert(run_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (run_dir / "hf" / "config.json").is_file()


def test_metadata_allow_list_reads_real_metadata_and_refuses_every_other_global(trained, tmp_path):
    data = (trained / "ckpt" / "step_1" / "policy" / "dcp" / ".metadata").read_bytes()
    metadata = read_dcp_metadata(data, "real")
    assert any(key.startswith("model.") for key in metadata.state_dict_metadata)
    marker = tmp_path / "marker"
    for evil in (Payload(marker), os.system, io.open, eval):
        with pytest.raises(ReinforgeError, match="not a checkpoint's metadata that reinforge can read safely"):
            read_dcp_metadata(pickle.dumps(evil), "crafted")
    assert not marker.exists()


def test_dcp_byte_entries_load_without_pickled_code(tmp_path):
    marker = tmp_path / "marker"
    planner = SafeLoadPlanner(flatten_state_dict=False)
    planner.state_dict = {}

    class Item:  # the fields of a ReadItem that load_bytes reads
        class dest_index:  # noqa: N801
            fqn = "optimizer.param_groups"

    buffer = io.BytesIO()
    torch.save({"lr": 0.1, "betas": (0.9, 0.99)}, buffer)
    buffer.seek(0)
    planner.load_bytes(Item, buffer)
    assert planner.state_dict["optimizer.param_groups"] == {"lr": 0.1, "betas": (0.9, 0.99)}
    evil = io.BytesIO()
    torch.save(Payload(marker), evil)
    evil.seek(0)
    with pytest.raises(ReinforgeError, match="will not unpickle"):
        planner.load_bytes(Item, evil)
    assert not marker.exists()


# ---------------------------------------------------------------- payloads the safe loader refuses (issue 30)
@pytest.mark.parametrize("name", ["trainer_state.pt", "rng_rank0.pt"])
def test_a_backend_payload_the_safe_loader_refuses_is_named_with_the_reason(tiny_model_dir, run_dir, name):
    """With a manifest forged to match, the backend's .pt files meet `weights_only=True`: refused, named, no traceback."""
    marker = run_dir / "marker"
    step = run_dir / "ckpt" / "step_1"
    torch.save({"format": 1, "step": Payload(marker)}, step / "policy" / name)
    write_manifest(step)
    with pytest.raises(ReinforgeError) as refused:
        resume(tiny_model_dir, run_dir)
    message = str(refused.value)
    assert f"checkpoint file {step / 'policy' / name} cannot be loaded: the safe loader refused it: it would call exec" in message
    assert "checkpointing.resume=false" in message
    assert not marker.exists()


def test_a_pickled_weights_file_in_a_model_folder_is_refused_naming_it(tiny_model_dir, tmp_path):
    marker = tmp_path / "marker"
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    (model / "model.safetensors").unlink()
    torch.save({"model.embed_tokens.weight": Payload(marker)}, model / "pytorch_model.bin")
    done = subprocess.run(
        [REINFORGE, "train", "--config", str(CPU_RECIPE), *tiny_overrides(model, tmp_path / "run", steps=1)],
        capture_output=True, text=True, env={**os.environ, **OFFLINE_ENV},
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    flat = " ".join(done.stderr.split())
    assert f"weights file {model / 'pytorch_model.bin'} (from policy.model_name) was refused by the safe loader: it would call exec" in flat
    assert not marker.exists()


# ---------------------------------------------------------------- files that point elsewhere (issue 30)
def test_a_shard_replaced_by_a_symlink_to_an_outside_file_is_refused_by_resume_and_convert(tiny_model_dir, run_dir, tmp_path):
    shard = run_dir / "ckpt" / "step_1" / "policy" / "dcp" / "__0_0.distcp"
    outside = tmp_path / "elsewhere.distcp"
    shutil.copy(shard, outside)  # the same bytes: the manifest's size and hash match through the link
    shard.unlink()
    shard.symlink_to(outside)
    problems = verify_checkpoint(run_dir / "ckpt" / "step_1")
    assert problems == [f"policy/dcp/__0_0.distcp is a symbolic link (to {outside}); a checkpoint holds only its own regular files"]
    done = convert(run_dir)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "policy/dcp/__0_0.distcp is a symbolic link" in " ".join(done.stderr.split())
    assert not (run_dir / "hf").exists()
    with pytest.raises(ReinforgeError, match="no intact checkpoint .*is a symbolic link"):
        resume(tiny_model_dir, run_dir)


def test_a_shard_hard_linked_from_outside_is_refused(run_dir, tmp_path):
    shard = run_dir / "ckpt" / "step_1" / "policy" / "dcp" / "__0_0.distcp"
    os.link(shard, tmp_path / "a-second-name")
    problems = verify_checkpoint(run_dir / "ckpt" / "step_1")
    assert problems == [
        "policy/dcp/__0_0.distcp is hard-linked from outside the checkpoint (2 links, 1 inside it); copy the checkpoint "
        "with its own files (cp -r, not cp -al)"
    ]


def test_a_forged_manifest_listing_a_link_to_dev_zero_does_not_hash_forever(tmp_path):
    step = tmp_path / "step_1"
    step.mkdir()
    (step / "training_info.json").write_text('{"step": 1}')
    (step / "zero.bin").symlink_to("/dev/zero")  # size 0 by stat, endless to read
    write_manifest_by_hand(step, {"training_info.json": None, "zero.bin": (0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")})
    check = "from reinforge.core.checkpoint_manifest import verify_checkpoint; import sys; print(verify_checkpoint(sys.argv[1]))"
    done = subprocess.run([sys.executable, "-c", check, str(step)], capture_output=True, text=True, timeout=60)
    assert "zero.bin is a symbolic link (to /dev/zero)" in done.stdout, done.stderr[-2000:]


def test_hashing_reads_no_more_than_the_listed_size(tmp_path):
    from reinforge.core.checkpoint_manifest import sha256_of

    data = tmp_path / "data"
    data.write_bytes(b"x" * 10)
    assert sha256_of(data, limit=10) == sha256_of(data)
    assert sha256_of(data, limit=4) != sha256_of(data)  # 5 bytes read: one past the limit changes the digest


def write_manifest_by_hand(step: Path, entries: dict[str, tuple[int, str] | None]) -> None:
    """A manifest as an attacker would write it: `None` entries get their real size and hash."""
    import hashlib
    import json

    files = {}
    for rel, entry in entries.items():
        if entry is None:
            raw = (step / rel).read_bytes()
            entry = (len(raw), hashlib.sha256(raw).hexdigest())
        files[rel] = {"size": entry[0], "sha256": entry[1]}
    (step / MANIFEST).write_text(json.dumps({"format": 1, "files": files}))
