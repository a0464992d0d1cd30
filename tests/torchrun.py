"""Run a 2-process `torchrun` worker for a test, with one retry when a rank dies of a native crash.

Why the retry: one CI run (2026-12-02, commit 901ebd0) lost rank 1 of the dtensor worker to SIGSEGV in
the middle of gloo all-gathers; the same test then passed 24 times in a row here, 12 of them with both
cores saturated by other processes. A segfault under pure-Python workers is a crash in native code
(gloo, torch), not a wrong result, so the run is repeated once, and the first run's log is reported as a
warning so it stays visible in the CI output. Anything else is never retried: a Python exception in a
worker, a timeout, or a result over tolerance fails the test on the first run. `PYTHONFAULTHANDLER` makes
a crashing rank print its Python stack, so the next occurrence says where it happened.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import warnings
from collections.abc import Mapping, Sequence

_CRASH = re.compile(r"Signal (11|7|6) \((SIGSEGV|SIGBUS|SIGABRT)\) received by PID")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def crashed_natively(stderr: str) -> bool:
    """torchrun's summary names a rank that died of SIGSEGV, SIGBUS or SIGABRT."""
    return _CRASH.search(stderr) is not None


def run_torchrun(worker_args: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None) -> None:
    """`python -m torch.distributed.run --nproc-per-node 2 WORKER_ARGS...`; assert it succeeded (one retry on a native crash)."""
    environment = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONFAULTHANDLER": "1",
        **(env or {}),
    }
    for attempt in (1, 2):
        command = [
            sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
            "--master-addr", "127.0.0.1", "--master-port", str(free_port()), *worker_args,
        ]  # fmt: skip
        done = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=timeout)
        if done.returncode == 0:
            return
        if attempt == 1 and crashed_natively(done.stderr):
            warnings.warn(f"torchrun: a rank crashed in native code; running once more. First run's log:\n{done.stderr[-6000:]}")
            continue
        break
    raise AssertionError(f"torchrun failed (attempt {attempt}):\n{done.stdout[-4000:]}\n{done.stderr[-8000:]}")
