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


ZERO_ADVANTAGE_STEPS = 5


class ZeroSignalWatch:
    """Warns once when `train/advantages_max_abs` was 0 for `patience` consecutive steps.

    Every advantage 0 means no gradient: the run goes on and exits 0 having learned nothing. The
    usual causes are a reward that never varies within a group (a constant reward function, a
    verifier that never parses), responses that are all cut at max_new_tokens, or an answer format
    the policy never meets; the warning names them with the run's own numbers. Algorithms that do
    not log advantages are never warned about.
    """

    KEY = "train/advantages_max_abs"

    def __init__(self, patience: int = ZERO_ADVANTAGE_STEPS) -> None:
        self.patience = patience
        self.warned = False
        self._window: list[tuple[int, dict[str, float]]] = []

    def observe(self, step: int, metrics: dict[str, Any]) -> str | None:
        """Record one step's metrics; returns (and prints) the warning the first time the streak reaches `patience`."""
        value = metrics.get(self.KEY)
        if value is None or self.warned or self.patience <= 0:
            return None
        if value != 0:
            self._window.clear()
            return None
        self._window.append((step, metrics))
        if len(self._window) < self.patience:
            return None
        self.warned = True
        message = self._message()
        warn(message)
        return message

    def _message(self) -> str:
        steps = [s for s, _ in self._window]
        rows = [m for _, m in self._window]

        def mean(key: str) -> float | None:
            values = [float(m[key]) for m in rows if isinstance(m.get(key), int | float)]
            return sum(values) / len(values) if values else None

        reward, spread, truncated = mean("train/reward_mean"), mean("train/reward_std"), mean("train/truncation_rate")
        env = {k: mean(k) for k in sorted({k for m in rows for k in m}) if k.startswith("env/")}
        counters = ", ".join(f"{k}={v:.3g}" for k, v in env.items() if v is not None) or "none logged"
        causes = [
            f"a reward that never varies within a prompt's group (mean reward {_fmt(reward)}, spread within the batch "
            f"{_fmt(spread)}): a constant reward function, or a verifier that never parses an answer",
            f"every response cut at the length limit (truncation rate {_fmt(truncated)}; raise "
            "policy.generation.max_new_tokens)",
            "an answer format the policy never meets (e.g. a required \\boxed{}): check the prompt template and the "
            "logged samples",
        ]
        return (
            f"{self.KEY} was 0 for {len(steps)} consecutive steps (steps {steps[0]}-{steps[-1]}): every advantage is 0, "
            f"so the policy gets no gradient and is learning nothing. Likely causes: {'; '.join(causes)}. The "
            f"environment's counters (mean per step): {counters}"
        )


def _fmt(value: float | None) -> str:
    return "not logged" if value is None else f"{value:.3g}"
