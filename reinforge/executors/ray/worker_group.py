"""`WorkerGroup`: a list of Ray actors of one kind, and the one place their results are awaited.

Why one place: a worker that dies must turn into an error that names it (group, rank, node)
rather than a Ray traceback, and it must do so at once. Training ranks block in collectives
when a peer dies, so waiting for every result in order would hang; results are awaited as they
arrive and the first death fails the call. Errors raised *inside* a worker come back as what
they were: a `ReinforgeError` (the user can fix it) is re-raised as is, anything else keeps
Ray's error with the remote traceback.

Dispatch helpers for a data-parallel x tensor-parallel group (`shard_for_ranks`,
`replica_leaders`) are pure functions, so the layout is tested without Ray.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from reinforge.core.errors import ReinforgeError

if TYPE_CHECKING:
    from reinforge.core.batch import Batch

log = logging.getLogger(__name__)


class WorkerDiedError(ReinforgeError):
    """A worker process died (killed, out of memory, crashed); the message names it."""


@attrs.frozen
class WorkerInfo:
    """Where one worker runs; reported by the worker itself once it starts."""

    group: str  # "training", "generation", "environment 'math'"
    index: int  # rank within the group
    node_ip: str = "?"
    node_id: str = "?"
    pid: int = 0
    gpu_ids: tuple[str, ...] = ()

    def describe(self) -> str:
        what = "rank" if self.group == "training" else "worker"
        if not self.pid:
            return f"{self.group} {what} {self.index} (not started)"
        gpus = f", GPUs {','.join(self.gpu_ids)}" if self.gpu_ids else ""
        return f"{self.group} {what} {self.index} (node {self.node_ip}, node id {self.node_id[:12]}, pid {self.pid}{gpus})"


class WorkerGroup:
    """Actors plus where each runs; `gather` awaits remote calls and turns failures into clear errors.

    Start-up work (importing torch, loading a model) can be `defer`red: it runs while the driver
    builds the other groups, and the group's first use waits for it (and reports its errors).

    Calls may come from two driver threads (asynchronous GRPO: the rollout producer calls the generation and
    environment groups while the trainer thread calls the training group, and refit or validation call the
    generation group from the trainer thread while the producer is paused). Each call keeps its state in its own
    frame (refs, pending results, retries). The group's own state: the deferred start-up is guarded by `_lock`
    (a second caller waits until the first has finished it, instead of reaching workers whose `then` has not run
    yet); `broken` is only ever assigned once a worker died, and read.
    """

    def __init__(self, name: str, actors: list[Any], infos: list[WorkerInfo]) -> None:
        self.name = name
        self.actors = actors
        self.infos = infos
        self.broken: str | None = None  # why the group is unusable, once a worker died
        self._deferred: list[tuple[list[Any], str, Callable[[list[Any]], None], float | None]] = []
        self._lock = threading.RLock()  # the deferred start-up, shared by the driver threads that call the group

    def __len__(self) -> int:
        return len(self.actors)

    def defer(
        self, refs: Sequence[Any], what: str, then: Callable[[list[Any]], None], *, timeout_s: float | None = None
    ) -> None:
        """Await `refs` (one per worker) at the group's first use, then pass their results to `then`."""
        with self._lock:
            self._deferred.append((list(refs), what, then, timeout_s))

    def ready(self) -> None:
        """Finish deferred start-up work; a failure stops the group. A caller from another thread waits until the
        work is finished (its `then` included), so no call reaches workers that have not been set up."""
        with self._lock:
            while self._deferred:
                refs, what, then, timeout_s = self._deferred.pop(0)
                try:
                    then(self.gather(refs, list(range(len(refs))), what=what, timeout_s=timeout_s))
                except BaseException:
                    self.broken = self.broken or f"{self.name} workers failed during {what}"
                    self._deferred.clear()
                    self.kill()
                    raise
            if self.broken:  # start-up failed in another thread while this one waited
                raise WorkerDiedError(f"the {self.name} workers are gone: {self.broken}")

    def check_usable(self) -> None:
        """Raise if a worker died; otherwise make sure start-up has finished."""
        if self.broken:
            raise WorkerDiedError(f"the {self.name} workers are gone: {self.broken}")
        self.ready()

    def call_all(self, method: str, *args: Any, **kwargs: Any) -> list[Any]:
        """Run `method` on every worker with the same arguments; results in worker order."""
        self.check_usable()
        refs = [getattr(actor, method).remote(*args, **kwargs) for actor in self.actors]
        return self.gather(refs, list(range(len(refs))), what=method)

    def gather(
        self,
        refs: Sequence[Any],
        workers: Sequence[int],
        *,
        what: str,
        retry: Callable[[int], Any] | None = None,
        error_grace_s: float = 30.0,
        restart_wait_s: float = 120.0,
        timeout_s: float | None = None,
    ) -> list[Any]:
        """Results of `refs` (ref i ran on worker `workers[i]`), in order, awaited as they complete.

        A dead worker fails the call at once with a `WorkerDiedError` naming it, unless `retry`
        (given the position i) returns a fresh ref to await instead: each position is retried once,
        and while Ray is still restarting the actor (up to `restart_wait_s`) the retry is resubmitted.
        An exception raised in a worker is re-raised once the other workers finish; if they have
        not finished `error_grace_s` later (stuck in a collective with the failed rank), the group
        is stopped first, since its next call would wait behind them forever. Results still missing
        after `timeout_s` (None: no limit) fail the call and stop the group.
        """
        import ray
        from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError

        results: list[Any] = [None] * len(refs)
        pending = {ref: i for i, ref in enumerate(refs)}
        retried: dict[int, float] = {}  # position -> when its retry started
        error: RayTaskError | None = None
        deadline: float | None = None
        give_up = None if timeout_s is None else time.monotonic() + timeout_s
        while pending:
            limits = [t for t in (deadline, give_up) if t is not None]
            timeout = max(0.0, min(limits) - time.monotonic()) if limits else None
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=timeout)
            if not ready and error is None:
                late = ", ".join(self.infos[workers[i]].describe() for i in sorted(pending.values()))
                self.broken = f"{late} did not finish {what} within {timeout_s:g} s"
                self.kill()
                raise WorkerDiedError(
                    f"{late} did not finish {what} within {timeout_s:g} s. If the workers never started, check the "
                    "group's Python environment (cluster.*_runtime: py_executable must exist on every node and run "
                    "Python with reinforge and Ray installed) and the Ray logs (/tmp/ray/session_latest/logs)"
                )
            if not ready:
                stuck = ", ".join(self.infos[workers[i]].describe() for i in sorted(pending.values()))
                log.error("%s still running %s %.0f s after a peer failed; stopping the group", stuck, what, error_grace_s)
                self.broken = f"a worker failed during {what} while {stuck} waited for it"
                self.kill()
                break
            i = pending.pop(ready[0])
            try:
                results[i] = ray.get(ready[0])
            except RayActorError as exc:
                info = self.infos[workers[i]]
                if retry is None:
                    self._fail(info, what, exc)
                if i not in retried:
                    retried[i] = time.monotonic()
                    log.warning("%s failed during %s; retrying its part once: %s", info.describe(), what, _reason(exc))
                elif not (isinstance(exc, ActorUnavailableError) and time.monotonic() - retried[i] < restart_wait_s):
                    self._fail(info, what, exc)
                else:
                    time.sleep(0.2)  # Ray is restarting the actor: ask again shortly
                pending[retry(i)] = i
            except RayTaskError as exc:
                if error is None:
                    error, deadline = exc, time.monotonic() + error_grace_s
        if error is not None:
            cause = getattr(error, "cause", None)
            if isinstance(cause, ReinforgeError):
                raise cause from None
            raise error
        return results

    def _fail(self, info: WorkerInfo, what: str, exc: Exception) -> None:
        self.broken = f"{info.describe()} died during {what}"
        self.kill()
        raise WorkerDiedError(
            f"{info.describe()} died during {what}: {_reason(exc)}. The run cannot continue with a missing worker; "
            "the rest of the group was stopped. Fix the cause (memory, a crash in the worker's log, a lost node) "
            "and start again: with checkpointing enabled the run resumes from its last checkpoint"
        ) from None

    def kill(self) -> None:
        """Stop every actor now (no cleanup in the workers; their resources return to Ray)."""
        import ray

        for actor in self.actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already dead, or Ray is shutting down
                pass

    def shutdown(self, method: str = "shutdown", timeout_s: float = 60.0) -> None:
        """Ask every live worker to release its resources, then stop the actors."""
        import ray

        try:
            if not self.broken and self.actors:
                self.ready()
                refs = [getattr(actor, method).remote() for actor in self.actors]
                ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
                ray.get(refs, timeout=1.0)
        except Exception as exc:  # noqa: BLE001 - shutting down: log, and stop the actors anyway
            log.warning("the %s workers did not shut down cleanly: %s", self.name, _reason(exc))
        finally:
            self.kill()
            self.actors = []
            self.broken = self.broken or "shut down"


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return next((line.strip() for line in text if line.strip()), type(exc).__name__)[:400]


# --------------------------------------------------------------------------- data-parallel layout
def shard_for_ranks(batch: Batch, world_size: int, tp_size: int) -> list[Batch]:
    """The rows each rank receives: contiguous data-parallel shards, replicated over tensor-parallel ranks.

    Ranks are laid out as rank = dp_rank * tp_size + tp_rank (the backends' convention). Shard
    sizes differ by at most one row; the backend all-reduces global token counts, so uneven
    shards give the same update as even ones.
    """
    dp_size = world_size // tp_size
    if len(batch) < dp_size:
        raise ReinforgeError(
            f"a batch of {len(batch)} rows cannot be shared by {dp_size} data-parallel ranks "
            f"({world_size} training workers / tensor_parallel_size {tp_size}); use a batch size of at least {dp_size}"
        )
    shards = batch.split(dp_size)
    return [shards[rank // tp_size] for rank in range(world_size)]


def replica_leaders(world_size: int, tp_size: int) -> list[int]:
    """The rank that answers for each data-parallel replica (its tensor-parallel rank 0), in data order."""
    return list(range(0, world_size, tp_size))


def split_bounds(rows: int, parts: int) -> list[tuple[int, int]]:
    """Contiguous [start, stop) ranges for at most `parts` workers, none empty, sizes differing by at most one."""
    parts = max(1, min(parts, rows))
    base, extra = divmod(rows, parts)
    bounds, start = [], 0
    for i in range(parts):
        stop = start + base + (1 if i < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds
