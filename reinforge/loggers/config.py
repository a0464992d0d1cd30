"""The options of the loggers that have any, as `logger.logger_cfg.<name>` in a run config.

A light module (attrs only): the registry imports it to structure the config and for `reinforge
plugins show`, without importing wandb or mlflow.

    logger:
      loggers: [console, jsonl, wandb, mlflow]
      logger_cfg:
        wandb: {project: arith-demo}
        mlflow: {tracking_uri: http://mlflow:5000, experiment: arith-demo}
"""

from __future__ import annotations

import attrs

from reinforge.core.config import doc


@attrs.define(kw_only=True, frozen=True)
class WandbConfig:
    project: str = doc(
        "W&B project the run is logged under (offline under <log_dir>/wandb unless WANDB_MODE or an API key is set)",
        default="reinforge",
    )


@attrs.define(kw_only=True, frozen=True)
class MlflowConfig:
    tracking_uri: str | None = doc(
        "MLflow tracking URI (null: $MLFLOW_TRACKING_URI, else a local file store at <log_dir>/mlruns)", default=None
    )
    experiment: str = doc("MLflow experiment the run is logged under", default="reinforge")
