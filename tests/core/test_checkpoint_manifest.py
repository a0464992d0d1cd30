"""Manifests name every kind of damage; resume takes the newest intact checkpoint; the trainer
state round-trips without pickle; fingerprints; output folders; stop requests; metric names."""

from __future__ import annotations

import hashlib
import json
import random
import signal

import pytest
import torch

from reinforge.core.checkpoint import CheckpointManager, check_writable
from reinforge.core.checkpoint_manifest import MANIFEST, find_manifest_root, verify_checkpoint, write_manifest
from reinforge.core.errors import ReinforgeError
from reinforge.core.run_config import CheckpointingConfig, LoggerConfig
from reinforge.core.run_guard import StopRequests, check_logged_metric, check_metric_name
from reinforge.core.trainer_state import (
    fingerprint_differences,
    read_trainer_state,
    run_fingerprint,
    write_trainer_state,
)


def make_checkpoint(folder):
    (folder / "policy" / "dcp").mkdir(parents=True)
    (folder / "policy" / "dcp" / "__0_0.distcp").write_bytes(bytes(range(256)) * 40)
    (folder / "policy" / "dcp" / ".metadata").write_bytes(b"meta" * 10)
    (folder / "dataloader.json").write_text('{"epoch": 0}')
    return folder


def test_manifest_lists_every_file_with_size_and_sha256(tmp_path):
    folder = make_checkpoint(tmp_path / "step_1")
    manifest = write_manifest(folder)
    shard = folder / "policy" / "dcp" / "__0_0.distcp"
    assert sorted(manifest["files"]) == ["dataloader.json", "policy/dcp/.metadata", "policy/dcp/__0_0.distcp"]
    assert manifest["files"]["policy/dcp/__0_0.distcp"] == {
        "size": 10240,
        "sha256": hashlib.sha256(shard.read_bytes()).hexdigest(),
    }
    assert json.loads((folder / MANIFEST).read_text()) == manifest
    assert verify_checkpoint(folder) == []


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda f: (f / "policy/dcp/__0_0.distcp").unlink(), ["policy/dcp/__0_0.distcp is missing"]),
        (
            lambda f: (f / "policy/dcp/__0_0.distcp").write_bytes(b"\x00" * 100),
            ["policy/dcp/__0_0.distcp has 100 bytes, the manifest says 10240 (truncated or replaced)"],
        ),
        (
            lambda f: (f / "policy/dcp/.metadata").write_bytes(b"META" * 10),  # same size, other bytes
            ["policy/dcp/.metadata does not match its SHA-256 in the manifest (corrupted or altered)"],
        ),
        (
            lambda f: (f / "trainer_state.pt").write_bytes(b"planted"),
            ["trainer_state.pt is not listed in the manifest (added after the save; it is never read)"],
        ),
        (lambda f: (f / MANIFEST).unlink(), ["no manifest.json (written before reinforge checkpoints had manifests, or not by reinforge)"]),
        (lambda f: (f / MANIFEST).write_text("{not json"), None),
        (lambda f: (f / MANIFEST).write_text('{"format": 7, "files": {}}'), None),
    ],
)
def test_verify_names_each_kind_of_damage(tmp_path, damage, expected):
    folder = make_checkpoint(tmp_path / "step_1")
    write_manifest(folder)
    damage(folder)
    problems = verify_checkpoint(folder)
    if expected is None:
        assert len(problems) == 1 and problems[0].startswith("manifest.json is unreadable")
    else:
        assert problems == expected


def test_manifest_root_is_the_folder_or_its_parent(tmp_path):
    folder = make_checkpoint(tmp_path / "step_1")
    write_manifest(folder)
    assert find_manifest_root(folder / "policy") == folder.resolve()
    assert find_manifest_root(folder) == folder.resolve()
    assert find_manifest_root(folder / "policy" / "dcp") is None


def save(mgr, step):
    return mgr.save(step, make_checkpoint, training_info={}, config_yaml="", metrics={})


def test_resume_skips_damaged_checkpoints_newest_first_with_a_warning(tmp_path):
    mgr = CheckpointManager(CheckpointingConfig(checkpoint_dir=str(tmp_path / "ckpt")))
    for step in (1, 2, 3):
        save(mgr, step)
    (mgr.root / "step_3" / "dataloader.json").unlink()
    (mgr.root / "step_2" / "policy" / "dcp" / "__0_0.distcp").write_bytes(b"short")
    warnings = []
    assert mgr.find_resumable(warnings.append) == mgr.root / "step_1"
    assert warnings == [
        f"skipping damaged checkpoint {mgr.root / 'step_3'}: dataloader.json is missing",
        f"skipping damaged checkpoint {mgr.root / 'step_2'}: policy/dcp/__0_0.distcp has 5 bytes, the manifest says "
        "10240 (truncated or replaced)",
    ]


def test_resume_with_no_intact_checkpoint_is_an_error_not_a_fresh_start(tmp_path):
    mgr = CheckpointManager(CheckpointingConfig(checkpoint_dir=str(tmp_path / "ckpt")))
    save(mgr, 4)
    (mgr.root / "step_4" / MANIFEST).unlink()
    with pytest.raises(ReinforgeError, match=r"no intact checkpoint to resume from .*step_4: no manifest\.json.*resume=false"):
        mgr.find_resumable(lambda message: None)
    empty = CheckpointManager(CheckpointingConfig(checkpoint_dir=str(tmp_path / "none")))
    assert empty.find_resumable(lambda message: None) is None


def test_trainer_state_round_trips_rng_exactly_without_pickle(tmp_path):
    random.seed(123)
    torch.manual_seed(7)
    random.gauss(0, 1)  # leaves a cached gauss_next in the Python RNG state
    write_trainer_state(tmp_path, {"policy_version": 5})
    expected_py = [random.random() for _ in range(5)]
    expected_torch = torch.rand(5)
    random.seed(0)
    torch.manual_seed(0)
    assert read_trainer_state(tmp_path) == {"policy_version": 5}
    assert [random.random() for _ in range(5)] == expected_py
    assert torch.equal(torch.rand(5), expected_torch)
    assert json.loads((tmp_path / "trainer_state.json").read_text())["format"] == 2


def test_damaged_trainer_state_is_a_user_error(tmp_path):
    write_trainer_state(tmp_path, {})
    (tmp_path / "trainer_state.json").write_text('{"format": 2}')
    with pytest.raises(ReinforgeError, match="trainer state .* cannot be read .*KeyError"):
        read_trainer_state(tmp_path)


def config_dict(model_dir, **changes):
    config = {
        "algorithm": "grpo",
        "grpo": {"num_generations_per_prompt": 4, "max_num_steps": 10, "val_period": 5, "seed": 42},
        "loss_fn": {"ratio_clip_min": 0.2},
        "policy": {"model_name": str(model_dir), "tokenizer_name": None, "precision": "float32", "optimizer": {"lr": 1e-4},
                   "train_global_batch_size": 8},
        "data": {"dataset": "arithmetic", "dataset_cfg": {"num_samples": 40}, "prompt_file": None},
    }
    for path, value in changes.items():
        *parents, key = path.split(".")
        target = config
        for part in parents:
            target = target[part]
        target[key] = value
    return config


def test_fingerprint_ignores_the_schedule_and_names_what_changed(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"hidden_size": 64}')
    (model / "tokenizer.json").write_text('{"model": {"vocab": {"a": 0}}}')
    base = run_fingerprint(config_dict(model))
    assert base["model"].startswith("sha256:")
    same = run_fingerprint(config_dict(model, **{"grpo.max_num_steps": 40, "grpo.val_period": 1}))
    assert fingerprint_differences(base, same) == []

    moved = tmp_path / "moved"
    model.rename(moved)  # the same model in another folder is the same model
    assert fingerprint_differences(base, run_fingerprint(config_dict(moved))) == []
    (moved / "config.json").write_text('{"hidden_size": 128}')
    (moved / "tokenizer.json").write_text('{"model": {"vocab": {"b": 0}}}')
    other = run_fingerprint(config_dict(moved, **{"data.dataset": "jsonl", "grpo.num_generations_per_prompt": 8}))
    changed = fingerprint_differences(base, other)
    assert [line.split(":")[0] for line in changed] == [
        "algorithm_settings.num_generations_per_prompt",
        "dataset.dataset",
        "model",
        "tokenizer",
    ]
    assert changed[0] == "algorithm_settings.num_generations_per_prompt: 4 (checkpoint) vs 8 (this run)"
    assert changed[1] == 'dataset.dataset: "arithmetic" (checkpoint) vs "jsonl" (this run)'


def test_output_folders_are_checked_before_training(tmp_path):
    class Config:
        checkpointing = CheckpointingConfig(checkpoint_dir=str(tmp_path / "ckpt"))
        logger = LoggerConfig(log_dir=str(tmp_path / "logs"))

    check_writable(Config)
    assert (tmp_path / "ckpt").is_dir() and (tmp_path / "logs").is_dir()
    assert list((tmp_path / "ckpt").iterdir()) == []  # the probe is gone
    (tmp_path / "file").write_text("not a folder")
    Config.checkpointing = CheckpointingConfig(checkpoint_dir=str(tmp_path / "file" / "ckpt"))
    with pytest.raises(ReinforgeError, match=r"checkpointing.checkpoint_dir '.*file/ckpt' is not writable: Not a directory"):
        check_writable(Config)


def test_sigterm_sets_a_stop_request_and_a_second_one_is_not_caught():
    previous = signal.getsignal(signal.SIGTERM)
    with StopRequests(None) as stop:
        assert not stop.requested(1)
        signal.raise_signal(signal.SIGTERM)
        assert stop.requested(2) and stop.reason == "SIGTERM received"
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGTERM) == previous


def test_the_budget_stops_when_another_step_would_not_fit():
    now = [0.0]
    stop = StopRequests(1.0, clock=lambda: now[0])  # 60 s
    with stop:
        for elapsed, expected in ((10.0, False), (20.0, False), (30.0, False), (42.0, True)):
            now[0] = elapsed  # steps of 10, 10, 10, 12 s: after 42 s, 42 + 2 * 12 > 60
            assert stop.requested(1) is expected, elapsed
    assert "save_before_minutes=1" in stop.reason


def test_metric_name_must_be_one_the_algorithm_logs():
    class Algorithm:
        validation_metrics = ("val/accuracy", "val/pass@4")

    check_metric_name(Algorithm(), CheckpointingConfig(metric_name="val:accuracy"))
    with pytest.raises(ReinforgeError, match=r"'val:acurracy' is never logged .*: val:accuracy, val:pass@4"):
        check_metric_name(Algorithm(), CheckpointingConfig(metric_name="val:acurracy"))
    check_metric_name(object(), CheckpointingConfig(metric_name="val:anything"))  # not declared: checked later
    # the environment's metrics are known only once it answers: checked after the first validation
    check_metric_name(Algorithm(), CheckpointingConfig(metric_name="val:env/accuracy"))
    check_logged_metric(CheckpointingConfig(metric_name="val:env/accuracy"), {"val/accuracy": 0.5, "val/env/accuracy": 0.5})
    with pytest.raises(ReinforgeError, match="use one of its validation metrics: val:accuracy, val:env/accuracy"):
        check_logged_metric(CheckpointingConfig(metric_name="val:env/acc"), {"val/accuracy": 0.5, "val/env/accuracy": 0.5})
    check_logged_metric(CheckpointingConfig(metric_name="val:loss"), {"train/loss": 1.0})  # no validation yet
    with pytest.raises(ReinforgeError, match="use one of its validation metrics: val:loss, val:rewards_accuracy"):
        check_logged_metric(CheckpointingConfig(metric_name="val:accuracy"), {"val/loss": 1.0, "val/rewards_accuracy": 0.5})


def test_a_library_error_hiding_a_full_disk_is_reported_with_the_os_error(tmp_path, monkeypatch):
    """DCP turns ENOSPC into RuntimeError('unexpected pos ...') inside a BaseException; a probe write names it."""
    import errno

    from reinforge.core import checkpoint as checkpoint_module

    mgr = CheckpointManager(CheckpointingConfig(checkpoint_dir=str(tmp_path / "ckpt")))
    save(mgr, 1)

    class WrappedByALibrary(BaseException):
        pass

    def full_disk(folder):
        (folder / "half.bin").write_bytes(b"\x00" * 10)
        raise WrappedByALibrary("unexpected pos 704 vs 598")

    monkeypatch.setattr(checkpoint_module, "_probe_write", lambda root: OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(ReinforgeError, match=r"step 2 failed at .*tmp_step_2: No space left on device \(errno 28\)"):
        mgr.save(2, full_disk, training_info={}, config_yaml="", metrics={})
    assert list(mgr.checkpoints()) == [1] and verify_checkpoint(mgr.root / "step_1") == []

    monkeypatch.setattr(checkpoint_module, "_probe_write", lambda root: None)  # the disk is fine: a real bug
    with pytest.raises(WrappedByALibrary):
        mgr.save(2, full_disk, training_info={}, config_yaml="", metrics={})
    assert not list(mgr.root.glob("tmp_step_*"))
