"""The `megatron` training backend in one process (CPU shim): the training conformance suite."""

from __future__ import annotations

import pytest

from reinforge.backends.training.megatron.backend import MegatronBackend
from reinforge.backends.training.megatron.config import MegatronConfig
from reinforge.core.interfaces import TrainingBackend
from reinforge.core.run_config import PolicyConfig
from reinforge.testing.conformance_training import *  # noqa: F403 - the suite's tests and fixtures

from megatron_cpu import cpu_shim  # tests/backends is on sys.path (see conftest.py)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def training_backend_factory():
    # Chunks of 7 positions: the 24-token conformance rows take the chunked (and recomputed) path.
    options = MegatronConfig(logprob_chunk_size=7, device="cpu")

    def make(policy: PolicyConfig, *, need_reference: bool = False) -> TrainingBackend:
        cpu_shim.install()  # idempotent here; in the suite's 2-rank processes it is what lets Megatron run
        return MegatronBackend(policy, options, need_reference=need_reference)

    return make


def test_is_a_training_backend(make_training_backend):
    assert isinstance(make_training_backend(), TrainingBackend)
