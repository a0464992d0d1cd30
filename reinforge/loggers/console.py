"""The console logger: how a run looks in a terminal, and in a CI log.

In a terminal it draws one live progress bar (step/total, reward, accuracy, loss, step time,
ETA) and prints validation results above it. When stdout is not a terminal (CI, `nohup`, a
pipe) it prints one short line per `log` call instead, so logs stay readable and never fill
with redraws or dozens of metrics per step; the full set goes to the JSONL/TensorBoard loggers.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from reinforge.core.run_config import LoggerConfig
from reinforge.loggers.values import scalar

# (metric key, label) shown on each step's line, in order, when present.
TRAIN_FIELDS = (("train/reward_mean", "reward"), ("train/accuracy", "acc"), ("train/loss", "loss"))
MAX_VAL_FIELDS = 4  # validation metrics shown per line; the rest are in the other loggers
STEP_TIME_WINDOW = 10  # recent steps the ETA averages over


def format_seconds(seconds: float) -> str:
    """12.3s, 4m05s, 1:02:03: short enough for a status line."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _number(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1e-3 and value != 0 else f"{value:.3f}"


class ConsoleLogger:
    """A progress bar in a terminal, one line per step elsewhere."""

    def __init__(
        self,
        config: LoggerConfig,
        log_dir: Path,
        *,
        run_name: str,
        total_steps: int | None,
        console: Console | None = None,
    ) -> None:
        self.console = console or Console(highlight=False)
        self.run_name = run_name
        self.total_steps = total_steps
        self.interactive = self.console.is_terminal
        self._step_times: deque[float] = deque(maxlen=STEP_TIME_WINDOW)
        self._last_step: int | None = None
        self._last_time = time.perf_counter()
        self._shown: dict[str, Any] = {}
        self._progress: Progress | None = None
        self._task: Any = None
        if self.interactive:
            self._progress = Progress(
                TextColumn(f"[bold]{escape(run_name)}[/]" if run_name else "step"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"),
                console=self.console,
                refresh_per_second=2,
            )
            self._task = self._progress.add_task("train", total=total_steps, stats="")
            self._progress.start()

    # ----------------------------------------------------------------- logging
    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        self._track_step_time(metrics, step)
        val = self._validation(metrics)
        if self._progress is not None:
            # The bar keeps each stat's last value: a validation-only call must not blank the reward.
            self._shown.update({k: metrics[k] for k, _ in TRAIN_FIELDS if scalar(metrics.get(k)) is not None})
            self._progress.update(self._task, completed=step, stats="  ".join(self._stats(self._shown)))
            if val:
                self._progress.console.print(f"step {step} val: {val}", markup=False, highlight=False)
            return
        total = f"/{self.total_steps}" if self.total_steps else ""
        parts = [f"step {step}{total}", *self._stats(metrics)]
        if val:
            parts.append(f"val {val}")
        self.console.print("  ".join(parts), markup=False, highlight=False, soft_wrap=True)

    def log_samples(self, samples: list[dict[str, Any]], step: int) -> None:
        """Samples are too long for a status line; the JSONL logger keeps them."""

    def log_config(self, config: Mapping[str, Any]) -> None:
        """The config is written beside checkpoints and by the JSONL logger, not to the terminal."""

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    # ----------------------------------------------------------------- helpers
    def _track_step_time(self, metrics: Mapping[str, Any], step: int) -> None:
        """Seconds per step: the trainer's `timing/total` when given, else the wall clock between steps.

        Several `log` calls for one step (train metrics, then validation) count as one step.
        """
        now = time.perf_counter()
        if step == self._last_step:
            return
        measured = scalar(metrics.get("timing/total"))
        self._step_times.append(measured if measured is not None else now - self._last_time)
        self._last_step = step
        self._last_time = now

    def _stats(self, metrics: Mapping[str, Any]) -> list[str]:
        parts = []
        for key, label in TRAIN_FIELDS:
            value = scalar(metrics.get(key))
            if value is not None:
                parts.append(f"{label} {_number(value)}")
        if self._step_times:
            mean = sum(self._step_times) / len(self._step_times)
            parts.append(f"{format_seconds(self._step_times[-1])}/step")
            if self.total_steps and self._last_step is not None:
                remaining = max(self.total_steps - self._last_step, 0)
                parts.append(f"eta {format_seconds(mean * remaining)}")
        return parts

    @staticmethod
    def _validation(metrics: Mapping[str, Any]) -> str:
        shown = []
        for key, value in metrics.items():
            number = scalar(value)
            if key.startswith("val/") and number is not None:
                shown.append(f"{key[4:]} {_number(number)}")
        more = f" (+{len(shown) - MAX_VAL_FIELDS} more)" if len(shown) > MAX_VAL_FIELDS else ""
        return "  ".join(shown[:MAX_VAL_FIELDS]) + more
