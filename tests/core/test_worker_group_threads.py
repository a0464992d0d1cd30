"""`WorkerGroup` called from two driver threads (asynchronous GRPO on Ray: the rollout producer and the trainer).

The deferred start-up is finished once: a second thread that uses the group while the first is finishing it
waits until the start-up's `then` has run, and a start-up that failed in one thread fails the other's call
too. No Ray is needed: `gather` is replaced by a stand-in that waits for the test's signal.
"""

from __future__ import annotations

import threading

import pytest

from reinforge.executors.ray.worker_group import WorkerDiedError, WorkerGroup, WorkerInfo


class SlowStartGroup(WorkerGroup):
    """A group whose start-up results arrive when the test releases them (or fail, with `fail=True`)."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__("generation", actors=[], infos=[WorkerInfo(group="generation", index=0)])
        self.release = threading.Event()
        self.gathering = threading.Event()
        self.gathers = 0
        self.fail = fail

    def gather(self, refs, workers, *, what, **_):
        self.gathers += 1
        self.gathering.set()
        assert self.release.wait(10)
        if self.fail:
            raise RuntimeError("the engine did not load")
        return ["pad-id"] * len(refs)

    def kill(self) -> None:
        pass


def _in_thread(target) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


def test_a_second_thread_waits_until_the_start_up_has_run_its_then():
    group = SlowStartGroup()
    set_up: list[str] = []
    group.defer(["ref"], "engine start-up", lambda results: set_up.extend(results))
    first, first_errors = _in_thread(group.check_usable)  # e.g. the producer's first generate
    assert group.gathering.wait(10)
    seen_by_second: list[list[str]] = []
    second, second_errors = _in_thread(lambda: (group.check_usable(), seen_by_second.append(list(set_up))))
    second.join(0.3)
    assert second.is_alive(), "the second caller went on before the start-up finished"
    group.release.set()
    first.join(10)
    second.join(10)
    assert not first_errors and not second_errors
    assert seen_by_second == [["pad-id"]]  # it saw the workers set up
    assert group.gathers == 1  # the start-up ran once


def test_a_start_up_that_fails_in_one_thread_fails_the_other_thread_too():
    group = SlowStartGroup(fail=True)
    group.defer(["ref"], "engine start-up", lambda results: None)
    first, first_errors = _in_thread(group.check_usable)
    assert group.gathering.wait(10)
    second, second_errors = _in_thread(group.check_usable)
    group.release.set()
    first.join(10)
    second.join(10)
    assert [type(e) for e in first_errors] == [RuntimeError]
    assert [type(e) for e in second_errors] == [WorkerDiedError]
    assert "generation workers failed during engine start-up" in str(second_errors[0])
    with pytest.raises(WorkerDiedError):
        group.check_usable()
