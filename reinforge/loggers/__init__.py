"""Metric loggers, and the `MultiLogger` the trainer talks to.

The trainer logs once; `MultiLogger` fans each call out to every logger named in
`logger.loggers` (console, jsonl, tensorboard, wandb, mlflow, or a third-party plugin), each
resolved through the registry. A logger must offer `log(metrics, step)` and `close()` (the
`reinforge.core.interfaces.Logger` seam); `log_samples` and `log_config` are optional, so a
plugin for a target without those notions does not have to stub them.

Every built-in logger takes the same constructor:
`Cls(config: LoggerConfig, log_dir: Path, *, run_name: str, total_steps: int | None)`, and a logger
that registered an options class (`register(..., config=...)`) also gets `options=`: its entry of
`logger.logger_cfg`, or None when the config has none (it then uses its own defaults).
This package imports nothing heavy; each logger imports its library when it is built.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from reinforge.core.config import structure
from reinforge.core.errors import PluginError, ReinforgeError
from reinforge.core.interfaces import Logger
from reinforge.core.run_config import LoggerConfig

if TYPE_CHECKING:
    from reinforge.core.registry import Registry

__all__ = ["MultiLogger", "build_logger"]


def build_logger(
    registry: Registry, name: str, config: LoggerConfig, log_dir: Path, *, run_name: str, total_steps: int | None
) -> Logger:
    """Resolve the logger plugin `name` and build it (unknown or uninstalled names fail with what to do)."""
    cls = registry.logger(name)
    if registry.config_class("logger", name) is None:
        if config.logger_cfg.get(name) is not None:
            raise ReinforgeError(f"the logger '{name}' takes no options, but logger.logger_cfg has an entry for it; remove it")
        logger = cls(config, Path(log_dir), run_name=run_name, total_steps=total_steps)
    else:  # only its own options: a logger never reads another plugin's settings
        options = config.logger_cfg.get(name)
        if isinstance(options, Mapping):  # written in Python as a plain dict: checked like YAML would be
            options = structure(options, registry.config_class("logger", name), lookup=registry.config_class,
                                source=f"logger.logger_cfg.{name}")  # fmt: skip
        logger = cls(config, Path(log_dir), run_name=run_name, total_steps=total_steps, options=options)
    if not isinstance(logger, Logger):
        raise PluginError(
            f"logger '{name}' ({registry.get('logger', name).source}) built a {type(logger).__name__}, "
            "which lacks log(metrics, step) or close(); fix the plugin"
        )
    return logger


class MultiLogger:
    """Sends every call to each of its loggers, in order; closes them all even if one fails."""

    def __init__(self, loggers: Sequence[Logger], *, num_samples: int | None = None) -> None:
        self.loggers = list(loggers)
        # At most this many samples are passed on per `log_samples` call (None = all).
        self.num_samples = num_samples

    @classmethod
    def from_config(
        cls,
        config: LoggerConfig,
        registry: Registry,
        *,
        log_dir: Path | None = None,
        run_name: str = "",
        total_steps: int | None = None,
    ) -> MultiLogger:
        """Build the loggers named in `config.loggers`, writing under `log_dir` (default: `config.log_dir`)."""
        duplicates = sorted({n for n in config.loggers if config.loggers.count(n) > 1})
        if duplicates:
            raise ReinforgeError(
                f"logger.loggers names {', '.join(repr(d) for d in duplicates)} more than once; list each logger once"
            )
        directory = Path(log_dir if log_dir is not None else config.log_dir)
        built: list[Logger] = []
        try:
            for name in config.loggers:
                built.append(build_logger(registry, name, config, directory, run_name=run_name, total_steps=total_steps))
        except BaseException:
            MultiLogger(built).close()  # do not leave a live progress bar or an open W&B run behind
            raise
        return cls(built, num_samples=config.num_samples_to_log)

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        for logger in self.loggers:
            logger.log(metrics, step)

    def log_samples(self, samples: Sequence[dict[str, Any]], step: int) -> None:
        """Pass the first `num_samples` samples to each logger that has a notion of samples."""
        chosen = list(samples if self.num_samples is None else samples[: self.num_samples])
        if not chosen:
            return
        for logger in self.loggers:
            method = getattr(logger, "log_samples", None)
            if method is not None:
                method(chosen, step)

    def log_config(self, config: Mapping[str, Any]) -> None:
        """Record the run's hyperparameters (the resolved config as a plain dict) where the target can."""
        for logger in self.loggers:
            method = getattr(logger, "log_config", None)
            if method is not None:
                method(config)

    def resume_at(self, step: int, checkpoint_metrics: Mapping[str, Any]) -> None:
        """A run resumed from checkpoint `step`: each logger that keeps files drops what it logged after it."""
        for logger in self.loggers:
            method = getattr(logger, "resume_at", None)
            if method is not None:
                method(step, checkpoint_metrics)

    def close(self) -> None:
        errors: list[BaseException] = []
        for logger in self.loggers:
            try:
                logger.close()
            except Exception as exc:  # close the others first, then report
                errors.append(exc)
        self.loggers = []
        if errors:
            raise errors[0]

    def __enter__(self) -> MultiLogger:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
