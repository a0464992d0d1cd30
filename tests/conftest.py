"""Fixtures shared across the test folders: one torch thread, and one local Ray per module.

Neither is autouse here: a module opts in, with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`
or by naming `ray_session` in a test's arguments.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """torch runs on one thread for the whole module (its module fixtures included), restored after it.

    Why: the CI machines have two shared cores; one thread is both faster on the tiny model and far
    less sensitive to a busy neighbour than torch's default of one thread per core.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    """One local Ray for the module, shut down after it: 4 logical CPUs (on 2 cores; workers reserve 0.5 each).

    `RAY_AUTH_MODE=disabled` unless the caller set it: a local test cluster needs no token.
    GPUs are detected as Ray always does, so tests/gpu uses the same session.
    """
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=4, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()
