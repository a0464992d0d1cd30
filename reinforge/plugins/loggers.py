"""Built-in metric loggers. Registering imports nothing heavy: only import paths."""

from __future__ import annotations

from reinforge.core.hookspecs import hookimpl
from reinforge.core.registry import Register


@hookimpl
def reinforge_register_loggers(register: Register) -> None:
    register(
        "console",
        "reinforge.loggers.console:ConsoleLogger",
        description="a live progress bar in a terminal (reward, accuracy, step time, ETA); one line per step otherwise",
    )
    register(
        "jsonl",
        "reinforge.loggers.jsonl:JsonlLogger",
        description="metrics.jsonl (one object per step), samples/step_N.jsonl and params.json in the run directory",
    )
    register(
        "tensorboard",
        "reinforge.loggers.tensorboard:TensorBoardLogger",
        requires=("tensorboard",),
        extra="tensorboard",
        description="TensorBoard event files in <log_dir>/tensorboard (scalars, sample tables, config)",
    )
    register(
        "wandb",
        "reinforge.loggers.wandb:WandbLogger",
        config="reinforge.loggers.config:WandbConfig",
        requires=("wandb",),
        extra="wandb",
        description="Weights & Biases; offline under <log_dir>/wandb unless WANDB_MODE or an API key is set",
    )
    register(
        "mlflow",
        "reinforge.loggers.mlflow:MlflowLogger",
        config="reinforge.loggers.config:MlflowConfig",
        requires=("mlflow",),
        extra="mlflow",
        description="MLflow; a local file store at <log_dir>/mlruns unless a tracking URI is set",
    )
