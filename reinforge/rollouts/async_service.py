"""`AsyncRolloutService`: a producer thread generates the next steps' groups while the current step trains.

Asynchronous GRPO (`grpo.async_grpo`) on the local executor. The algorithm `submit`s the work of
future steps (each step's own prompts, read ahead without moving the loader, and its own sampling
seed) and `take`s a step's groups when it trains it. What the producer guarantees:

- **Staleness is bounded by admission, not by discarding.** The producer starts a step's work only
  when the weights the generator holds have at least the work's `min_version`; nothing is dropped.
  Work runs oldest step first, one whole step per batch, through the same turn loop as `collect`,
  so multi-turn environments work unchanged and age 0 generates exactly what the synchronous run does.
- **Refit happens between producer batches.** `sync` (and validation's `collect`, and anything in
  `paused()`) waits for the producer's current batch to end and holds it until done; weights never
  change mid-batch.
- **A generator failure surfaces in the trainer once.** The producer stops and keeps the error; the
  next `take` (or `paused`) re-raises it in the trainer thread. Nothing waits on a dead producer.
- **Groups found over the bound are regenerated and counted** (`async/regenerated_groups`): groups whose
  generating weights are unknown after `mark_stale` (a resume), or older than the work's bound, and work
  whose prompts are not the ones the step trains.

The producer's time is accounted here under a lock (`async/producer_busy_s`, ...): the run's `Timer` is
not thread-safe, so the producer never touches it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import attrs

from reinforge.core.errors import ReinforgeError
from reinforge.core.interfaces import Environment, GenerationBackend, TrainingBackend
from reinforge.core.run import StepGroups, StepWork
from reinforge.core.sampling import SamplingParams
from reinforge.core.timer import Timer
from reinforge.rollouts.service import RolloutService
from reinforge.rollouts.turns import RolloutResult


@attrs.define
class _Ready:
    work: StepWork
    result: RolloutResult
    version: int  # the generator's policy version when the batch started (refits never land mid-batch)


class AsyncRolloutService(RolloutService):
    """`RolloutService` plus a producer thread that generates submitted steps ahead of training."""

    def __init__(
        self,
        generation: GenerationBackend,
        environment: Environment,
        tokenizer: Any,
        *,
        max_total_length: int,
        timer: Timer | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        shutdown_timeout_s: float = 60.0,
    ) -> None:
        # The generator stays awake: it works beside training, and sleeping would free nothing to overlap with.
        super().__init__(
            generation, environment, tokenizer, max_total_length=max_total_length, timer=timer, sleep_between=False, tools=tools
        )
        self.shutdown_timeout_s = shutdown_timeout_s
        self._cond = threading.Condition()
        self._queue: dict[int, StepWork] = {}  # submitted, not started (step -> work)
        self._ready: dict[int, _Ready] = {}  # generated, not taken
        self._running: StepWork | None = None  # the batch the producer is generating now
        self._pauses = 0  # paused() depth (the trainer thread's)
        self._stopping = False
        self._error: BaseException | None = None
        self._error_raised = False
        self._producer_timer = Timer()  # only the producer thread uses it
        self._stats = {"regenerated_groups": 0.0, "trainer_wait_s": 0.0, "producer_busy_s": 0.0, "producer_wait_s": 0.0}
        self._phases: dict[str, float] = {}  # the producer's generation / reward seconds since the last take
        self._thread = threading.Thread(target=self._produce, name="reinforge-rollout-producer", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ the trainer's side
    def submit(self, work: StepWork) -> None:
        """Queue `work` (replacing queued work of the same step); the producer starts it once admitted."""
        with self._cond:
            self._raise_failure()
            if work.step in self._ready or (self._running is not None and self._running.step == work.step):
                return  # already generated or being generated; `take` checks its prompts and bound
            self._queue[work.step] = work
            self._cond.notify_all()

    def take(self, work: StepWork) -> StepGroups:
        """`work.step`'s groups for exactly `work.prompts`, waiting for the producer; regenerates (and counts) groups
        over the bound or made for other prompts. Re-raises the producer's error, once."""
        start = time.perf_counter()
        with self._cond:
            while True:
                self._raise_failure()
                ready = self._ready.get(work.step)
                if ready is not None:
                    if _same_prompts(ready.work.prompts, work.prompts) and ready.version >= work.min_version:
                        del self._ready[work.step]
                        break
                    del self._ready[work.step]  # over the bound, or other prompts: generate again, never train it
                    self._stats["regenerated_groups"] += len(ready.work.prompts)
                    self._queue[work.step] = work
                    self._cond.notify_all()
                elif work.step in self._queue:
                    if not _same_prompts(self._queue[work.step].prompts, work.prompts):
                        self._queue[work.step] = work  # submitted for other prompts, not started: these instead
                elif self._running is None or self._running.step != work.step:
                    self._queue[work.step] = work  # never submitted: generate it now, first
                    self._cond.notify_all()
                if self._pauses:  # the caller holds the producer: waiting here would never end
                    raise RuntimeError(f"take(step {work.step}) inside paused(): the producer cannot generate it")
                queued = self._queue.get(work.step)
                if queued is not None and self.generator_version < queued.min_version:  # only a refit could admit it
                    raise RuntimeError(
                        f"take(step {work.step}) needs generator weights of policy version >= {queued.min_version}, but the "
                        f"generator holds {self.generator_version}: sync() the generator before taking the step's groups"
                    )
                self._cond.wait()
            self._stats["trainer_wait_s"] += time.perf_counter() - start
            stats = {f"async/{name}": value for name, value in self._stats.items()}
            stats["async/groups_ready"] = float(sum(len(r.work.prompts) for r in self._ready.values()))
            for name in self._stats:
                self._stats[name] = 0.0
            phases, self._phases = self._phases, {}
        return StepGroups(step=work.step, result=ready.result, version=ready.version, stats=stats, phases=phases)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Hold the producer between batches: wait for its current batch, keep it from starting another until the end."""
        start = time.perf_counter()
        with self._cond:
            self._pauses += 1
            try:
                while self._running is not None:
                    self._cond.wait()
                self._raise_failure()
            except BaseException:
                self._pauses -= 1
                self._cond.notify_all()
                raise
            self._stats["trainer_wait_s"] += time.perf_counter() - start
        try:
            yield
        finally:
            with self._cond:
                self._pauses -= 1
                self._cond.notify_all()

    def collect(self, prompts: list[dict[str, Any]], sampling: SamplingParams, *, max_turns: int = 1) -> RolloutResult:
        """Roll out now in the caller's thread (validation), with the producer held."""
        with self.paused():
            return super().collect(prompts, sampling, max_turns=max_turns)

    def sync(self, policy: TrainingBackend, version: int, *, bucket_bytes: int) -> dict[str, float]:
        """Refit between producer batches: the producer's batch in flight ends with the weights it started with."""
        with self.paused():
            return super().sync(policy, version, bucket_bytes=bucket_bytes)  # leaving the pause wakes the producer

    def mark_stale(self) -> None:
        """The generator holds unknown weights: groups already generated are regenerated (and counted), none trained."""
        with self.paused():
            with self._cond:
                super().mark_stale()
                for step, ready in sorted(self._ready.items()):
                    self._stats["regenerated_groups"] += len(ready.work.prompts)
                    self._queue[step] = ready.work
                self._ready.clear()

    def shutdown(self) -> None:
        """Stop the producer (after its current batch, waiting at most `shutdown_timeout_s`); queued work is dropped."""
        with self._cond:
            self._stopping = True
            self._queue.clear()
            self._cond.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(self.shutdown_timeout_s)

    def _raise_failure(self) -> None:
        """Under the lock: re-raise the producer's error in the caller (once; later calls say it stopped)."""
        if self._error is None:
            return
        if not self._error_raised:
            self._error_raised = True
            raise self._error
        raise ReinforgeError("the rollout producer stopped after the generation error reported above; no more rollouts")

    # ------------------------------------------------------------------ the producer thread
    def _next_work(self) -> StepWork | None:
        """Under the lock: the oldest queued work, once admitted (None when stopping)."""
        waited = time.perf_counter()
        while True:
            if self._stopping:
                return None
            if self._queue and not self._pauses:
                work = self._queue[min(self._queue)]
                if self.generator_version >= work.min_version:  # admission bounds staleness
                    del self._queue[work.step]
                    self._stats["producer_wait_s"] += time.perf_counter() - waited
                    return work
            self._cond.wait()

    def _produce(self) -> None:
        while True:
            with self._cond:
                work = self._next_work()
                if work is None:
                    return
                self._running = work
                version = self.generator_version
            start = time.perf_counter()
            try:
                prompts = [p for p in work.prompts for _ in range(work.group_size)]
                result = self._roll_out(prompts, work.sampling, max_turns=work.max_turns, timer=self._producer_timer)
                phases = self._producer_timer.pop(prefix="")
            except BaseException as exc:  # the trainer re-raises it; nothing more is generated
                with self._cond:
                    self._error = exc
                    self._running = None
                    self._cond.notify_all()
                return
            with self._cond:
                self._stats["producer_busy_s"] += time.perf_counter() - start
                for name, seconds in phases.items():
                    self._phases[name] = self._phases.get(name, 0.0) + seconds
                self._ready[work.step] = _Ready(work=work, result=result, version=version)
                self._running = None
                self._cond.notify_all()


def _same_prompts(made_for: list[Any], wanted: list[Any]) -> bool:
    """The very prompt objects, in order (the loader hands out the same objects through `peek` and `next`)."""
    return len(made_for) == len(wanted) and all(a is b for a, b in zip(made_for, wanted))
