"""The MLflow logger (`pip install 'reinforge[mlflow]'`; `mlflow-skinny` is enough).

Where runs go: `logger.logger_cfg.mlflow.tracking_uri` if set, else `MLFLOW_TRACKING_URI` if set, else
a local file store at `<log_dir>/mlruns`, so a run logs without a server. Recent MLflow keeps
the file store in maintenance mode and refuses it unless `MLFLOW_ALLOW_FILE_STORE=true`;
reinforge opts in only while it opens a local folder store (the variable is restored right
after). To browse it:

    MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri <log_dir>/mlruns

The experiment is `logger.logger_cfg.mlflow.experiment`. MLflow names allow only letters, digits and
`_-. /`, so metric keys are adjusted: `val/pass@1` is logged as `val/pass_at_1`, any other
character becomes `_`. The config is logged as flattened params (`policy.optimizer.lr`);
samples as a `samples/step_{N}.jsonl` artifact.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from reinforge.core.errors import ReinforgeError
from reinforge.core.run_config import LoggerConfig
from reinforge.loggers.config import MlflowConfig
from reinforge.loggers.values import jsonable, scalar_metrics

MAX_PARAMS_PER_BATCH = 100  # MLflow's limits per log_batch call
MAX_METRICS_PER_BATCH = 1000
MAX_PARAM_CHARS = 500  # the smallest limit across MLflow versions and stores (newer allow 6000)
ALLOW_FILE_STORE = "MLFLOW_ALLOW_FILE_STORE"


def mlflow_key(key: str) -> str:
    """A metric or param name MLflow accepts (see the module docstring)."""
    key = re.sub(r"[^/\w.\- ]", "_", key.replace("@", "_at_"))
    return re.sub(r"/+", "/", key).strip("/") or "_"


def tracking_uri(options: MlflowConfig, log_dir: Path) -> str:
    """The configured tracking URI, then $MLFLOW_TRACKING_URI, then `<log_dir>/mlruns`."""
    if options.tracking_uri:
        return options.tracking_uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return (Path(log_dir).resolve() / "mlruns").as_uri()


def _is_local_folder(uri: str) -> bool:
    scheme = urlsplit(uri).scheme
    return scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt")  # "C:\\..." parses as scheme "c"


@contextmanager
def _file_store_allowed(uri: str) -> Iterator[None]:
    """Let MLflow open a local folder store (it checks the variable only when the store is created)."""
    if not _is_local_folder(uri) or os.environ.get(ALLOW_FILE_STORE):
        yield
        return
    os.environ[ALLOW_FILE_STORE] = "true"
    try:
        yield
    finally:
        os.environ.pop(ALLOW_FILE_STORE, None)


def _flatten(config: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from _flatten(value, name + ".")
        else:
            text = value if isinstance(value, str) else json.dumps(jsonable(value), ensure_ascii=False)
            yield mlflow_key(name), text[:MAX_PARAM_CHARS]


class MlflowLogger:
    """One MLflow run per trainer run, through an `MlflowClient` of its own (no global active run)."""

    def __init__(
        self, config: LoggerConfig, log_dir: Path, *, run_name: str, total_steps: int | None, options: MlflowConfig | None = None
    ) -> None:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        options = options or MlflowConfig()
        self.tracking_uri = tracking_uri(options, Path(log_dir))
        try:
            with _file_store_allowed(self.tracking_uri):
                self.client = MlflowClient(tracking_uri=self.tracking_uri)
                experiment = self.client.get_experiment_by_name(options.experiment)
                experiment_id = (
                    experiment.experiment_id if experiment is not None else self.client.create_experiment(options.experiment)
                )
                self.run_id: str = self.client.create_run(experiment_id, run_name=run_name or None).info.run_id
        except MlflowException as exc:
            raise ReinforgeError(
                f"MLflow could not start a run at '{self.tracking_uri}': {exc.message}. Set "
                "logger.logger_cfg.mlflow.tracking_uri to a reachable server (http://...) or a database "
                "(sqlite:///path/mlflow.db, needs `pip install mlflow`), or drop 'mlflow' from logger.loggers"
            ) from exc

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        from mlflow.entities import Metric

        now_ms = int(time.time() * 1000)
        entries = [Metric(mlflow_key(k), v, now_ms, step) for k, v in scalar_metrics(metrics).items()]
        for start in range(0, len(entries), MAX_METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=entries[start : start + MAX_METRICS_PER_BATCH])

    def log_samples(self, samples: list[dict[str, Any]], step: int) -> None:
        if not samples:
            return
        text = "".join(json.dumps(jsonable(s), ensure_ascii=False) + "\n" for s in samples)
        self.client.log_text(self.run_id, text, f"samples/step_{step}.jsonl")

    def log_config(self, config: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        params = [Param(key, value) for key, value in _flatten(config)]
        for start in range(0, len(params), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=params[start : start + MAX_PARAMS_PER_BATCH])

    def close(self) -> None:
        self.client.set_terminated(self.run_id)
