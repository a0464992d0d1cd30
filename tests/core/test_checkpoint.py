"""CheckpointManager: folders are complete or absent, resume finds the newest, retention keeps the right ones."""

from __future__ import annotations

import json

import pytest

from reinforge.core.checkpoint import CheckpointManager, load_training_info, metric_key
from reinforge.core.errors import ReinforgeError
from reinforge.core.run_config import CheckpointingConfig


def manager(tmp_path, **options) -> CheckpointManager:
    return CheckpointManager(CheckpointingConfig(checkpoint_dir=str(tmp_path / "ckpt"), **options))


def write_policy(folder):
    (folder / "policy").mkdir()
    (folder / "policy" / "weights.bin").write_bytes(b"\x00" * 16)


def save(mgr, step, **metrics):
    return mgr.save(step, write_policy, training_info={"consumed_samples": step * 8}, config_yaml="seed: 1\n", metrics=metrics)


def steps_on_disk(mgr):
    return sorted(p.name for p in mgr.root.iterdir())


def test_save_writes_every_part_into_step_n(tmp_path):
    mgr = manager(tmp_path)
    path = save(mgr, 3, **{"val/accuracy": 0.5, "train/loss": float("nan")})

    assert path == mgr.root / "step_3"
    assert (path / "policy" / "weights.bin").read_bytes() == b"\x00" * 16
    assert (path / "config.yaml").read_text() == "seed: 1\n"
    info = load_training_info(path)
    assert info == {"consumed_samples": 24, "step": 3, "metrics": {"val/accuracy": 0.5, "train/loss": None}}
    assert mgr.load_training_info(path) == info
    assert steps_on_disk(mgr) == ["step_3"]


def test_a_failing_write_leaves_no_checkpoint_and_no_temporary_folder(tmp_path):
    mgr = manager(tmp_path)
    save(mgr, 1)

    def crash(folder):
        (folder / "policy").mkdir()
        (folder / "policy" / "half.bin").write_bytes(b"\x01")
        raise OSError("disk full")

    with pytest.raises(ReinforgeError, match="saving checkpoint step 2 failed .*disk full") as failure:
        mgr.save(2, crash, training_info={}, config_yaml="", metrics={})
    assert f"the previous checkpoint {mgr.root / 'step_1'} is intact" in str(failure.value)

    assert steps_on_disk(mgr) == ["step_1"]
    assert mgr.latest_step() == 1


def _fake_checkpoint(folder, step):
    folder.mkdir(parents=True)
    (folder / "training_info.json").write_text(json.dumps({"step": step, "metrics": {}}))


def test_stale_temporary_folders_are_removed_at_start(tmp_path):
    root = tmp_path / "ckpt"
    _fake_checkpoint(root / "step_2", 2)
    _fake_checkpoint(root / "tmp_step_5", 5)  # a crash mid-save, newer than step_2
    _fake_checkpoint(root / "tmp_step_3_deleting", 3)  # a crash mid-retention

    mgr = CheckpointManager(CheckpointingConfig(checkpoint_dir=str(root)))
    assert steps_on_disk(mgr) == ["step_2"]
    assert mgr.latest_step() == 2


def test_latest_detection_ignores_temporary_and_foreign_folders(tmp_path):
    mgr = manager(tmp_path)
    save(mgr, 2)
    _fake_checkpoint(mgr.root / "tmp_step_9", 9)  # a save in progress
    (mgr.root / "step_7").mkdir()  # not written by reinforge: no training_info.json
    (mgr.root / "step_8.bak").mkdir()

    assert mgr.latest_step() == 2
    assert mgr.latest_path() == mgr.root / "step_2"


def test_no_checkpoint_dir_means_start_fresh(tmp_path):
    mgr = manager(tmp_path)
    assert mgr.latest_step() is None and mgr.latest_path() is None
    assert not mgr.root.exists()  # nothing is created before the first save


def test_latest_is_by_step_number_not_by_name(tmp_path):
    mgr = manager(tmp_path)
    for step in (9, 10, 2):
        save(mgr, step)
    assert mgr.latest_step() == 10
    assert list(mgr.checkpoints()) == [2, 9, 10]


def test_saving_a_step_again_replaces_it(tmp_path):
    mgr = manager(tmp_path)
    save(mgr, 4, **{"val/accuracy": 0.1})
    save(mgr, 4, **{"val/accuracy": 0.9})
    assert steps_on_disk(mgr) == ["step_4"]
    assert load_training_info(mgr.root / "step_4")["metrics"] == {"val/accuracy": 0.9}


def test_top_k_by_metric_keeps_the_best_plus_the_latest(tmp_path):
    mgr = manager(tmp_path, keep_top_k=2, metric_name="val:accuracy", higher_is_better=True)
    accuracies = {1: 0.2, 2: 0.9, 3: 0.4, 4: 0.8, 5: 0.1}
    for step, accuracy in accuracies.items():
        save(mgr, step, **{"val/accuracy": accuracy})
    assert list(mgr.checkpoints()) == [2, 4, 5]  # best two (0.9, 0.8) and the latest (0.1)

    save(mgr, 6)  # no validation this step: ranks last, kept only as the latest
    assert list(mgr.checkpoints()) == [2, 4, 6]
    assert not list(mgr.root.glob("tmp_step_*"))


def test_top_k_lower_is_better(tmp_path):
    mgr = manager(tmp_path, keep_top_k=1, metric_name="val:loss", higher_is_better=False)
    for step, loss in {1: 0.5, 2: 0.3, 3: 0.7}.items():
        save(mgr, step, **{"val/loss": loss})
    assert list(mgr.checkpoints()) == [2, 3]


def test_the_latest_is_not_kept_twice_when_it_is_also_the_best(tmp_path):
    mgr = manager(tmp_path, keep_top_k=2, metric_name="val/accuracy")  # a metric key works too
    for step, accuracy in {1: 0.1, 2: 0.2, 3: 0.3}.items():
        save(mgr, step, **{"val/accuracy": accuracy})
    assert list(mgr.checkpoints()) == [2, 3]


def test_without_a_metric_the_latest_k_are_kept(tmp_path):
    mgr = manager(tmp_path, keep_top_k=2)
    for step in range(1, 6):
        save(mgr, step, **{"val/accuracy": 1.0 / step})  # ignored: no metric_name
    assert list(mgr.checkpoints()) == [4, 5]


def test_without_top_k_everything_is_kept(tmp_path):
    mgr = manager(tmp_path, metric_name="val:accuracy")
    for step in range(1, 5):
        save(mgr, step, **{"val/accuracy": 0.5})
    assert list(mgr.checkpoints()) == [1, 2, 3, 4]


def test_metric_key_mapping():
    assert metric_key("val:accuracy") == "val/accuracy"
    assert metric_key("train:reward_mean") == "train/reward_mean"
    assert metric_key("val/pass@1") == "val/pass@1"


def test_loading_something_that_is_not_a_checkpoint_says_so(tmp_path):
    with pytest.raises(ReinforgeError, match="not a complete checkpoint"):
        load_training_info(tmp_path)
