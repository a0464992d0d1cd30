"""Stopping a run cleanly: SIGTERM and a wall-clock budget; checks of what retention ranks by.

Schedulers (Slurm, Kubernetes, ...) send SIGTERM some time before they kill a job. The first
SIGTERM only sets a flag: the trainer finishes the step it is in, saves a checkpoint and exits
with status 0, so a requeued job resumes where it stopped. A second SIGTERM gets Python's default
behaviour (the process ends at once). `checkpointing.save_before_minutes` does the same when
the next step would no longer finish, with its save, inside the budget.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from types import FrameType, TracebackType
from typing import Any

from reinforge.core.checkpoint import metric_key
from reinforge.core.errors import ReinforgeError


def warn(message: str) -> None:
    """A one-line notice on stderr (resume, skipped checkpoints, early stop); not an error."""
    print(f"reinforge: {message}", file=sys.stderr, flush=True)


class StopRequests:
    """`with StopRequests(budget_minutes): ... if stop.requested(step): save and leave`."""

    def __init__(self, budget_minutes: float | None, *, clock: Any = time.monotonic) -> None:
        self.budget_s = None if budget_minutes is None else budget_minutes * 60.0
        self.clock = clock
        self.reason = ""
        self._sigterm = False
        self._previous: Any = None
        self._installed = False
        self._started = clock()
        self._last = self._started
        self._longest_step = 0.0

    def __enter__(self) -> StopRequests:
        self._started = self._last = self.clock()
        # Signal handlers can only be set from the main thread (a notebook's worker thread cannot).
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
            self._installed = True
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous if self._previous is not None else signal.SIG_DFL)
            self._installed = False

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self._sigterm = True
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once

    def requested(self, step: int) -> bool:
        """Called after each step (its save included): whether to save now and stop."""
        now = self.clock()
        self._longest_step = max(self._longest_step, now - self._last)
        self._last = now
        if self._sigterm:
            self.reason = "SIGTERM received"
            return True
        if self.budget_s is not None and (now - self._started) + 2 * self._longest_step > self.budget_s:
            # Room for one more step and its save, with the slowest step so far as the estimate.
            self.reason = f"checkpointing.save_before_minutes={self.budget_s / 60:g} would be exceeded by another step"
            return True
        return False


def check_metric_name(algorithm: Any, checkpointing: Any) -> None:
    """A `checkpointing.metric_name` the algorithm never logs is an error that lists the ones it does.

    Algorithms that know their validation metrics up front declare them as `validation_metrics`;
    for the others, and for the environment's metrics (`val:env/...`), `check_logged_metric` checks
    the first validation's metrics instead.
    """
    if not checkpointing.metric_name:
        return
    known = getattr(algorithm, "validation_metrics", None)
    key = metric_key(checkpointing.metric_name)
    if key.startswith("val/env/"):  # the environment's own metrics: known only once it has answered
        return
    if known is not None and key not in known:
        raise _unknown_metric(checkpointing.metric_name, sorted(known))


def check_logged_metric(checkpointing: Any, metrics: dict[str, Any]) -> None:
    """After a validation: its metrics must include the one checkpoints are ranked by."""
    validation = sorted(k for k in metrics if k.startswith("val/"))
    if checkpointing.metric_name and validation and metric_key(checkpointing.metric_name) not in metrics:
        raise _unknown_metric(checkpointing.metric_name, validation)


def _unknown_metric(name: str, known: list[str]) -> ReinforgeError:
    spelled = ", ".join(k.replace("/", ":", 1) for k in known) or "(none: this algorithm does not validate)"
    return ReinforgeError(
        f"checkpointing.metric_name '{name}' is never logged by this algorithm, so keep_top_k could not rank "
        f"checkpoints by it; use one of its validation metrics: {spelled} (or null to keep the latest)"
    )
