"""The W&B logger, for real, in offline mode (no account, no network): what it writes can be read back."""

from __future__ import annotations

import struct

import pytest

from reinforge.core.run_config import LoggerConfig
from reinforge.loggers.wandb import choose_mode, has_api_key

BLOCK = 32768  # a .wandb file is a sequence of 32 KiB blocks of length-prefixed chunks (the LevelDB log format)


def read_history(path):
    """{step: {key: value}} from an offline run's .wandb file (wandb ships no reader for it)."""
    import json

    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    position, pending, records = 7, b"", []
    while position + 7 <= len(data):
        if BLOCK - position % BLOCK < 7:  # the tail of a block too short for a header is padding
            position += BLOCK - position % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if kind == 0 and length == 0:
            break
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            records.append(pending)
            pending = b""
    history = {}
    for raw in records:
        record = pb.Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") == "history":
            items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item}
            history[items.pop("_step")] = {k: v for k, v in items.items() if not k.startswith("_")}
    return history


@pytest.fixture
def no_wandb_account(tmp_path, monkeypatch):
    """No key, no WANDB_MODE, and wandb's own folders inside tmp_path: nothing leaks into the home folder."""
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL", "WANDB_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb-home" / name.lower()))
    monkeypatch.setenv("WANDB_SILENT", "true")
    return tmp_path


def test_mode_is_offline_without_a_key_and_left_to_wandb_otherwise(tmp_path):
    netrc = tmp_path / "netrc"
    assert choose_mode({"NETRC": str(netrc)}) == "offline"
    assert choose_mode({"NETRC": str(netrc), "WANDB_MODE": "disabled"}) is None
    assert choose_mode({"NETRC": str(netrc), "WANDB_API_KEY": "k" * 40}) is None
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    assert has_api_key({"NETRC": str(netrc)})
    assert not has_api_key({"NETRC": str(netrc), "WANDB_BASE_URL": "https://wandb.example.com"})


def test_offline_run_records_metrics_samples_and_config(no_wandb_account):
    wandb = pytest.importorskip("wandb", reason="the wandb logger needs `pip install 'reinforge[wandb]'`")
    from reinforge.loggers.config import WandbConfig
    from reinforge.loggers.wandb import WandbLogger

    log_dir = no_wandb_account / "run"
    logger = WandbLogger(LoggerConfig(), log_dir, run_name="offline-test", total_steps=2, options=WandbConfig(project="reinforge-tests"))
    assert logger.run.project == "reinforge-tests"
    assert logger.mode == "offline"
    logger.log_config({"policy": {"model_name": "tiny"}})
    logger.log({"train/reward_mean": 0.25, "val/pass@1": 0.5, "note": "dropped", "bad": float("nan")}, step=1)
    logger.log({"train/reward_mean": 0.75}, step=2)
    logger.log_samples([{"prompt": "1+1=", "response": "2", "reward": 1.0}], step=2)
    logger.close()
    # finish() hands the records to wandb's service process, which writes the .wandb file when it
    # pleases; shutting the service down makes the file complete before we read it.
    wandb.teardown()

    runs = list((log_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    history = read_history(next(runs[0].glob("run-*.wandb")))
    assert history[1] == {"train/reward_mean": 0.25, "val/pass@1": 0.5}
    assert history[2]["train/reward_mean"] == 0.75
    assert history[2]["samples/nrows"] == 1
    assert list((runs[0] / "files" / "media" / "table").glob("samples_2_*.table.json"))
