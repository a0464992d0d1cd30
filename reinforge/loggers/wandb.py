"""The Weights & Biases logger (`pip install 'reinforge[wandb]'`).

Which mode a run uses:

- `WANDB_MODE` set (online, offline, disabled, ...): wandb follows it, as everywhere else.
- otherwise, an API key found (`WANDB_API_KEY`, or `wandb login`'s entry in ~/.netrc or the file
  named by `NETRC`, for the host in `WANDB_BASE_URL`): online.
- otherwise: offline. A laptop or CI run without an account never blocks on a login prompt
  and never fails; the run is kept under `<log_dir>/wandb/offline-run-*` and can be uploaded
  later with `wandb sync <log_dir>/wandb/offline-run-*`.

The project is `logger.logger_cfg.wandb.project` (default "reinforge"); the run's name is the trainer's
run name. Samples become a `wandb.Table` per step; the config goes to the run's config.
"""

from __future__ import annotations

import netrc
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from reinforge.core.errors import ReinforgeError
from reinforge.core.run_config import LoggerConfig
from reinforge.loggers.config import WandbConfig
from reinforge.loggers.values import jsonable, scalar_metrics

DEFAULT_HOST = "https://api.wandb.ai"


def has_api_key(environ: Mapping[str, str] | None = None) -> bool:
    """Whether wandb would find credentials: the environment, or a netrc entry for the W&B host."""
    env = os.environ if environ is None else environ
    if env.get("WANDB_API_KEY") or env.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    path = Path(env["NETRC"]).expanduser() if env.get("NETRC") else Path.home() / ".netrc"
    host = urlsplit(env.get("WANDB_BASE_URL") or DEFAULT_HOST).netloc
    try:
        return bool(host) and netrc.netrc(str(path)).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def choose_mode(environ: Mapping[str, str] | None = None) -> str | None:
    """The `mode` passed to `wandb.init`: None lets wandb decide (WANDB_MODE or a key is there), else offline."""
    env = os.environ if environ is None else environ
    if env.get("WANDB_MODE") or has_api_key(env):
        return None
    return "offline"


class WandbLogger:
    """One W&B run per trainer run; offline unless wandb is configured (see the module docstring)."""

    def __init__(
        self, config: LoggerConfig, log_dir: Path, *, run_name: str, total_steps: int | None, options: WandbConfig | None = None
    ) -> None:
        import wandb

        self._wandb = wandb
        directory = Path(log_dir)
        directory.mkdir(parents=True, exist_ok=True)
        self.mode = choose_mode()
        try:
            self.run = wandb.init(
                project=(options or WandbConfig()).project,
                name=run_name or None,
                dir=str(directory),
                mode=self.mode,
                reinit="create_new",  # a run object of our own; never the process-global `wandb.run`
            )
        except wandb.Error as exc:
            raise ReinforgeError(
                f"wandb could not start a run: {exc}. Run `wandb login`, set WANDB_MODE=offline, "
                "or drop 'wandb' from logger.loggers"
            ) from exc

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        self.run.log(scalar_metrics(metrics), step=step)

    def log_samples(self, samples: list[dict[str, Any]], step: int) -> None:
        """A table with one row per sample (columns: the union of the samples' keys)."""
        if not samples:
            return
        columns = list(dict.fromkeys(key for sample in samples for key in sample))
        rows = [[_cell(sample.get(c)) for c in columns] for sample in samples]
        self.run.log({"samples": self._wandb.Table(columns=columns, data=rows)}, step=step)

    def log_config(self, config: Mapping[str, Any]) -> None:
        self.run.config.update(jsonable(config), allow_val_change=True)

    def close(self) -> None:
        self.run.finish()


def _cell(value: Any) -> Any:
    value = jsonable(value)
    return value if value is None or isinstance(value, str | int | float | bool) else str(value)
