"""The MLflow logger, for real, against a local file store under the run directory."""

from __future__ import annotations

import json
import os

import pytest

from reinforge.core.config import structure
from reinforge.core.registry import Registry
from reinforge.core.run_config import LoggerConfig
from reinforge.loggers.config import MlflowConfig
from reinforge.loggers.mlflow import mlflow_key, tracking_uri


def test_metric_names_are_made_acceptable_to_mlflow():
    assert mlflow_key("val/pass@1") == "val/pass_at_1"
    assert mlflow_key("train/reward_mean") == "train/reward_mean"
    assert mlflow_key("env/a[b]") == "env/a_b_"
    assert mlflow_key("/odd//key/") == "odd/key"


def test_tracking_uri_prefers_config_then_environment_then_local_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri(MlflowConfig(), tmp_path) == (tmp_path.resolve() / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert tracking_uri(MlflowConfig(), tmp_path) == "http://mlflow.example:5000"
    assert tracking_uri(MlflowConfig(tracking_uri="sqlite:///x.db"), tmp_path) == "sqlite:///x.db"


def test_local_run_records_metrics_params_and_samples(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="the mlflow logger needs `pip install 'reinforge[mlflow]'`")
    from mlflow.tracking import MlflowClient

    from reinforge.loggers import build_logger
    from reinforge.loggers.mlflow import ALLOW_FILE_STORE

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv(ALLOW_FILE_STORE, raising=False)
    registry = Registry.create()
    # The experiment comes from the mlflow logger's own options, as a YAML config spells them.
    config = structure({"loggers": ["mlflow"], "logger_cfg": {"mlflow": {"experiment": "reinforge-tests"}}}, LoggerConfig,
                       lookup=registry.config_class)  # fmt: skip
    logger = build_logger(registry, "mlflow", config, tmp_path, run_name="local-test", total_steps=2)
    assert ALLOW_FILE_STORE not in os.environ  # the opt-in does not outlive the store's creation
    logger.log_config({"policy": {"model_name": "tiny", "optimizer": {"lr": 1e-5}}, "loggers": ["console"]})
    logger.log({"train/reward_mean": 0.25, "val/pass@1": 0.5, "note": "dropped"}, step=1)
    logger.log({"train/reward_mean": 0.75}, step=2)
    logger.log_samples([{"prompt": "1+1=", "response": "2", "reward": 1.0}], step=2)
    logger.close()

    assert (tmp_path / "mlruns").is_dir()
    monkeypatch.setenv(ALLOW_FILE_STORE, "true")
    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    run = client.get_run(logger.run_id)
    assert run.info.run_name == "local-test" and run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "reinforge-tests"
    history = client.get_metric_history(logger.run_id, "train/reward_mean")
    assert sorted((m.step, m.value) for m in history) == [(1, 0.25), (2, 0.75)]
    assert [(m.step, m.value) for m in client.get_metric_history(logger.run_id, "val/pass_at_1")] == [(1, 0.5)]
    assert set(run.data.metrics) == {"train/reward_mean", "val/pass_at_1"}
    assert run.data.params == {"policy.model_name": "tiny", "policy.optimizer.lr": "1e-05", "loggers": '["console"]'}
    samples = client.download_artifacts(logger.run_id, "samples/step_2.jsonl", str(tmp_path / "dl"))
    assert [json.loads(line) for line in open(samples)] == [{"prompt": "1+1=", "response": "2", "reward": 1.0}]
