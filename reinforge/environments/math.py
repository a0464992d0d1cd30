"""Verifiable math reward: 1.0 when Hugging Face math-verify finds the answer equal to the gold one.

math-verify bounds its own work with `signal.alarm`, which only works in a process's main
thread, and a Python signal handler cannot interrupt a long call into C (a huge integer power,
a regex backtracking through a pathological response). So verification runs in a small pool of
worker *processes* that this module owns: one answer in flight per worker, a wall-clock
deadline per answer, and a worker that misses its deadline is killed and replaced. A bad
answer costs its own reward (0) and a counter in the metrics, never the run.

Workers are started with `subprocess` running `python -I -c` on this module, not with
`multiprocessing`: they never re-import the user's `__main__` (no `if __name__ == "__main__"`
guard needed, no torch imported into each worker) and they behave the same under every
start method. `-I` keeps the working directory (and PYTHON* variables) off the worker's
`sys.path`: a `math_verify.py` in the folder a run starts from cannot stand in for the package.
The worker gets the parent's import path explicitly instead, minus the working directory. They talk to the parent over a private socket pair with
`multiprocessing.connection` framing. POSIX only (it passes a file descriptor).
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import weakref
from collections import deque
from collections.abc import Mapping, Sequence
from functools import lru_cache
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, NoReturn

import attrs

from reinforge.core.config import doc
from reinforge.core.errors import ReinforgeError
from reinforge.core.interfaces import EnvironmentStep

# A worker that is not ready this long after it was started (importing math-verify and sympy
# takes about a second on an idle laptop) is broken, not slow.
_STARTUP_TIMEOUT_S = 120.0
# The folder holding `reinforge/`, appended (not prepended: nothing may shadow the standard
# library) to the worker's sys.path so that a checkout that is not installed works too.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
_WORKER_CODE = (
    "import sys, json; sys.path[:] = json.loads(sys.argv[3]); "
    "from reinforge.environments.math import _worker_main; _worker_main(int(sys.argv[1]), int(sys.argv[2]))"
)
# Seconds a worker gets to exit after being asked to, before it is killed.
_SHUTDOWN_GRACE_S = 2.0
# Per-answer outcomes (`info[i]["verify_status"]`).
VERIFIED = "verified"  # math-verify ran to the end; the reward says whether it matched
NO_ANSWER = "no_answer"  # nothing could be extracted from the response
GOLD_UNPARSED = "gold_unparsed"  # the gold answer itself could not be parsed (a data problem)
ERROR = "error"  # math-verify raised, or the worker died on this answer
TIMEOUT = "timeout"  # math-verify's own timeout, or the hard deadline (worker killed)
TOO_LONG = "too_long"  # longer than max_answer_chars; not sent to a worker at all


@attrs.define(kw_only=True, frozen=True)
class MathEnvironmentConfig:
    """Options of the `math` environment."""

    num_workers: int = doc(
        "verifier processes; each holds one answer at a time (about 1 s of CPU to start one)",
        default=2,
        validator=attrs.validators.ge(1),
    )
    verify_timeout: float = doc(
        "wall-clock seconds one answer may take before its worker is killed and the answer scores 0",
        default=5.0,
        validator=attrs.validators.gt(0),
    )
    # 100k characters is about 25-30k tokens, the longest responses of the DeepScaleR recipe's last
    # stage; a lower cap would zero long correct answers and act as a hidden length penalty.
    # Parsing ordinary text is cheap (a 100k-character solution takes ~15 ms); pathological text
    # is stopped by the timeouts, so the cap only bounds memory and traffic to the workers.
    max_answer_chars: int = doc(
        "responses longer than this (in characters) score 0 without being parsed",
        default=100_000,
        validator=attrs.validators.ge(1),
    )
    # math-verify also reads plain expressions, so on tasks whose question is itself an expression
    # ("What is 7 - 5?") a policy can earn the reward by restating the question; the CPU demo's
    # policy found exactly that. Requiring the final answer in \boxed{} closes the loophole.
    require_boxed: bool = doc(
        "score only the content of the last \\boxed{} (no box: 0), instead of any expression in the response",
        default=False,
    )


@attrs.define(frozen=True)
class _Outcome:
    """What a worker reports for one answer (plain data, so it crosses the socket cheaply)."""

    reward: float
    status: str
    extracted: str | None = None
    error: str | None = None


def _reply(conversation: list[dict[str, str]]) -> str:
    """The model's reply: the assistant messages after the last user message (earlier ones are prompt examples)."""
    last_user = max((k for k, m in enumerate(conversation) if m.get("role") == "user"), default=-1)
    return "\n".join(str(m["content"]) for m in conversation[last_user + 1 :] if m.get("role") == "assistant")


class MathEnvironment:
    """Single-turn environment scoring `\\boxed{}` (or plain expression) answers against a gold answer.

    `step` joins the assistant messages after the conversation's last user message (worked examples in
    the prompt, `data.example_turns`, are not the answer), reads the gold answer from
    `metadata[i]["answer"]` (wrapped in `\\boxed{}` unless it already contains one) and scores
    1.0 or 0.0. The worker pool starts on the first `step` and is reused until `shutdown`.
    """

    # counts, which add up when batches are merged (Ray workers, validation chunks); `accuracy` is a mean
    summed_metrics = ("num_answers", "no_answer", "verify_errors", "verify_timeouts", "answers_too_long",
                      "gold_unparsed", "worker_restarts")

    def __init__(self, config: MathEnvironmentConfig | None = None) -> None:
        self.config = config if config is not None else MathEnvironmentConfig()
        self._pool: _VerifyPool | None = None

    def step(self, conversations: list[list[dict[str, str]]], metadata: list[dict[str, Any]]) -> EnvironmentStep:
        """Score each conversation; see the module docstring for what can go wrong and how it is counted."""
        if len(conversations) != len(metadata):
            raise ValueError(f"{len(conversations)} conversations but {len(metadata)} metadata entries")
        n = len(conversations)
        outcomes: list[_Outcome | None] = [None] * n
        jobs: list[tuple[str, str]] = []
        job_rows: list[int] = []
        for i, (conversation, meta) in enumerate(zip(conversations, metadata)):
            response = _reply(conversation)
            gold = _gold_of(meta, i)
            if len(response) > self.config.max_answer_chars:
                outcomes[i] = _Outcome(0.0, TOO_LONG)
                continue
            if self.config.require_boxed:
                boxed = extract_boxed_answer(response)
                if boxed is None:
                    outcomes[i] = _Outcome(0.0, NO_ANSWER)
                    continue
                response = f"\\boxed{{{boxed}}}"
            jobs.append((response, gold))
            job_rows.append(i)

        restarts = 0
        if jobs:
            if self._pool is None:
                self._pool = _VerifyPool(self.config.num_workers, self.config.verify_timeout)
            results, restarts = self._pool.run(jobs)
            for row, result in zip(job_rows, results):
                outcomes[row] = result

        done = [o for o in outcomes if o is not None]
        assert len(done) == n
        return EnvironmentStep(
            rewards=[o.reward for o in done],
            observations=[None] * n,
            done=[True] * n,
            metrics=_metrics(done, restarts),
            info=[_info(o) for o in done],
            correct=[o.status == VERIFIED and o.reward >= 1.0 for o in done],  # a verified match scores 1
        )

    def shutdown(self) -> None:
        """Stop the worker processes; a later `step` starts a fresh pool."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None


def _gold_of(meta: Mapping[str, Any], row: int) -> str:
    """The gold answer in the form math-verify's LaTeX extraction expects: inside `\\boxed{}`."""
    if "answer" not in meta or meta["answer"] is None:
        raise ReinforgeError(
            f"the math environment needs the gold answer in metadata['answer'], but row {row} has "
            f"keys {sorted(meta)}; build prompts with reinforge.data.prompts.build_prompts (it copies "
            "each record's 'answer'), or make your dataset reader return an 'answer' column."
        )
    gold = str(meta["answer"]).strip()
    return gold if "\\boxed" in gold else f"\\boxed{{{gold}}}"


def _metrics(outcomes: Sequence[_Outcome], restarts: int) -> dict[str, float]:
    """Batch metrics, logged as env/<key>: the accuracy plus one counter per way an answer can score 0."""
    n = len(outcomes)

    def count(status: str) -> float:
        return float(sum(o.status == status for o in outcomes))

    return {
        "accuracy": sum(o.reward for o in outcomes) / n if n else 0.0,
        "num_answers": float(n),
        "no_answer": count(NO_ANSWER),
        "verify_errors": count(ERROR),
        "verify_timeouts": count(TIMEOUT),
        "answers_too_long": count(TOO_LONG),
        "gold_unparsed": count(GOLD_UNPARSED),
        "worker_restarts": float(restarts),
    }


def _info(outcome: _Outcome) -> dict[str, Any]:
    info: dict[str, Any] = {"extracted_answer": outcome.extracted, "verify_status": outcome.status}
    if outcome.error is not None:
        info["verify_error"] = outcome.error
    return info


def extract_boxed_answer(text: str) -> str | None:
    """The content of the last complete `\\boxed{...}` (or `\\fbox{...}`) in `text`, braces matched.

    Used for majority voting, where answers are compared as strings before any parsing.
    `\\boxed 5` (no braces) yields the token after the space. Returns None when there is none.
    """
    pos = len(text)
    while True:
        start = max(text.rfind("\\boxed", 0, pos), text.rfind("\\fbox", 0, pos))
        if start < 0:
            return None
        found = _boxed_content(text, start + (6 if text.startswith("\\boxed", start) else 5))
        if found is not None:
            return found
        pos = start  # unbalanced or empty: try an earlier one


def _boxed_content(text: str, i: int) -> str | None:
    """Content of the `\\boxed` command whose name ends just before index `i`; None when incomplete."""
    j = i
    while j < len(text) and text[j] in " \t\n":
        j += 1
    if j < len(text) and text[j] == "{":
        depth = 0
        for k in range(j, len(text)):
            if text[k] in "{}" and text[k - 1] != "\\":
                depth += 1 if text[k] == "{" else -1
                if depth == 0:
                    return text[j + 1 : k].strip() or None
        return None
    if j > i and j < len(text):  # `\\boxed 5`: the next word
        word = text[j:].split(maxsplit=1)[0].rstrip("$.,")
        return word or None
    return None


# --------------------------------------------------------------------------- parent side
@attrs.define(eq=False)
class _Worker:
    process: subprocess.Popen[bytes]
    conn: Connection
    ready: bool = False
    row: int | None = None  # index of the job in flight
    deadline: float = 0.0  # time.monotonic() by which the worker must answer (or become ready)


def _worker_sys_path() -> str:
    """The parent's import path without the working directory ('' or its absolute path), plus this package's root."""
    cwd = Path.cwd().resolve()
    paths = [p for p in sys.path if p and Path(p).resolve() != cwd]
    return json.dumps([*paths, _PACKAGE_ROOT])


class _VerifyPool:
    """`size` verifier processes, each answering one job at a time, each job under `timeout` seconds."""

    def __init__(self, size: int, timeout: float) -> None:
        self.size = size
        self.timeout = timeout
        # math-verify's own per-call timeouts, in whole seconds (at least 1): a third of ours, so
        # that a slow answer normally ends with math-verify's TimeoutException and the worker
        # survives; our deadline is the backstop for work that no signal interrupts.
        self.inner_timeout = max(1, int(timeout) // 3)
        self._workers: list[_Worker] = []
        self.restarts = 0  # workers replaced since the pool was created
        # Kill the processes if the pool is garbage-collected or the interpreter exits unclosed.
        self._finalizer = weakref.finalize(self, _stop_workers, self._workers)

    def run(self, jobs: Sequence[tuple[str, str]]) -> tuple[list[_Outcome], int]:
        """Verify `(response, gold)` pairs; returns one outcome per pair, in order, and how many workers were replaced."""
        if not self._workers:
            self._workers.extend(self._start() for _ in range(self.size))
        restarts_before = self.restarts
        for k, w in enumerate(self._workers):
            if w.row is not None:  # left busy by an interrupted run: its late answer would be taken for a new job's
                self._replace(k)
        outcomes: dict[int, _Outcome] = {}
        queue = deque(range(len(jobs)))
        while len(outcomes) < len(jobs):
            for k, w in enumerate(self._workers):
                if w.ready and w.row is None and queue:
                    try:
                        w.conn.send(jobs[queue[0]])
                    except OSError:  # it died while idle: replace it, the job stays queued
                        self._replace(k)
                        continue
                    w.row, w.deadline = queue.popleft(), time.monotonic() + self.timeout
            waiting = [w for w in self._workers if not w.ready or w.row is not None]
            next_deadline = min(w.deadline for w in waiting)
            readable = wait([w.conn for w in waiting], timeout=max(0.0, next_deadline - time.monotonic()))
            for w in waiting:
                row = w.row
                outcome = self._collect(w, readable=w.conn in readable)
                if outcome is not None:
                    assert row is not None
                    outcomes[row] = outcome
        return [outcomes[row] for row in range(len(jobs))], self.restarts - restarts_before

    def _collect(self, w: _Worker, *, readable: bool) -> _Outcome | None:
        """The outcome of `w`'s job if it finished, died or ran out of time; None while it works or starts."""
        if readable:
            try:
                message = w.conn.recv()
            except (EOFError, OSError):
                if not w.ready:
                    self._startup_failed("it exited during start-up")
                code = w.process.poll()
                died = "verifier process died" + (f" (exit code {code})" if code is not None else "")
                return self._lose(w, _Outcome(0.0, ERROR, error=died))
            if not w.ready:
                if message[0] != "ready":
                    self._startup_failed(message[1])
                w.ready = True
                return None
            w.row = None
            return _Outcome(*message)
        if time.monotonic() < w.deadline:
            return None
        if not w.ready:
            self._startup_failed(f"it was not ready after {_STARTUP_TIMEOUT_S:.0f} s")
        return self._lose(w, _Outcome(0.0, TIMEOUT, error=f"killed after {self.timeout:g} s"))

    def _lose(self, w: _Worker, outcome: _Outcome) -> _Outcome:
        """Kill and replace a worker whose job failed with `outcome`."""
        self._replace(self._workers.index(w))
        return outcome

    def close(self) -> None:
        """Stop every worker; a later `run` starts new ones."""
        _stop_workers(self._workers)

    def _start(self) -> _Worker:
        parent_sock, child_sock = socket.socketpair()
        fd = child_sock.fileno()
        try:
            process = subprocess.Popen(
                [sys.executable, "-I", "-c", _WORKER_CODE, str(fd), str(self.inner_timeout), _worker_sys_path()],
                pass_fds=(fd,),
                stdin=subprocess.DEVNULL,
            )
        finally:
            child_sock.close()
        conn = Connection(parent_sock.detach())
        return _Worker(process=process, conn=conn, deadline=time.monotonic() + _STARTUP_TIMEOUT_S)

    def _replace(self, k: int) -> None:
        _kill(self._workers[k])
        self._workers[k] = self._start()
        self.restarts += 1

    def _startup_failed(self, why: str) -> NoReturn:
        self.close()
        raise ReinforgeError(
            f"a math-verify worker process ({sys.executable}) could not start: {why}. The math environment "
            "needs the `math-verify` package in the same Python environment (pip install 'reinforge[math]'); "
            "run `python -c \"import math_verify\"` to see the underlying error."
        )


def _kill(worker: _Worker) -> None:
    worker.process.kill()
    worker.process.wait()
    worker.conn.close()


def _stop_workers(workers: list[_Worker]) -> None:
    """Ask every worker to exit, then kill the ones that do not (also the finalizer, so no `self`)."""
    for w in workers:
        try:
            w.conn.send(None)
        except OSError:
            pass
    for w in workers:
        try:
            w.process.wait(timeout=_SHUTDOWN_GRACE_S)
        except subprocess.TimeoutExpired:
            w.process.kill()
            w.process.wait()
        w.conn.close()
    workers.clear()


# --------------------------------------------------------------------------- worker side
def _worker_main(fd: int, inner_timeout: int) -> None:
    """Entry point of a verifier process: answer `(response, gold)` jobs until told to stop (None) or orphaned."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent, which stops the workers
    conn = Connection(fd)
    try:
        try:
            _verify("\\boxed{1}", "\\boxed{1}", inner_timeout)  # import and warm up before taking deadlines
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises a ReinforgeError
            conn.send(("failed", f"{type(exc).__name__}: {exc}"))
            return
        conn.send(("ready", None))
        while (job := conn.recv()) is not None:
            conn.send(attrs.astuple(_verify(*job, inner_timeout)))
    except (EOFError, OSError):  # the parent is gone: nobody is waiting for an answer
        return


@lru_cache(maxsize=4096)
def _parse_gold(gold: str, timeout_s: int) -> list[Any]:
    """Gold answers repeat (one per sampled response), so their parse is cached per worker."""
    from math_verify import LatexExtractionConfig, parse

    return parse(gold, [LatexExtractionConfig()], parsing_timeout=timeout_s, raise_on_error=True)


def _verify(response: str, gold: str, timeout_s: int) -> _Outcome:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
    from math_verify.errors import TimeoutException

    try:
        gold_parsed = _parse_gold(gold, timeout_s)
    except TimeoutException:
        return _Outcome(0.0, GOLD_UNPARSED, error="timed out parsing the gold answer")
    except Exception as exc:  # noqa: BLE001 - a bad gold answer must not stop the batch
        return _Outcome(0.0, GOLD_UNPARSED, error=_describe(exc))
    if not gold_parsed:
        return _Outcome(0.0, GOLD_UNPARSED, error=f"no answer found in gold {gold[:200]!r}")
    try:
        predicted = parse(
            response, [ExprExtractionConfig(), LatexExtractionConfig()], parsing_timeout=timeout_s, raise_on_error=True
        )
    except TimeoutException:
        return _Outcome(0.0, TIMEOUT, error="timed out parsing the response")
    except Exception as exc:  # noqa: BLE001
        return _Outcome(0.0, ERROR, error=_describe(exc))
    extracted = next((p for p in reversed(predicted) if isinstance(p, str)), None)
    if not predicted:
        return _Outcome(0.0, NO_ANSWER)
    try:
        correct = verify(gold_parsed, predicted, timeout_seconds=timeout_s, raise_on_error=True)
    except TimeoutException:
        return _Outcome(0.0, TIMEOUT, extracted, "timed out comparing with the gold answer")
    except Exception as exc:  # noqa: BLE001
        return _Outcome(0.0, ERROR, extracted, _describe(exc))
    return _Outcome(1.0 if correct else 0.0, VERIFIED, extracted)


def _describe(exc: BaseException) -> str:
    # Never str() a sympy object here: printing a huge expression can itself hang.
    return f"{type(exc).__name__}: {str(exc)[:200]}"
