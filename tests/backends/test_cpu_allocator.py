"""`keep_freed_memory`: a repeated allocation pattern stops page-faulting once glibc keeps what it frees.

Each case runs in a fresh interpreter, because the setting is process-wide and cannot be undone.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from reinforge.backends.training import cpu_allocator

# A train step's pattern in miniature: tensors of a few sizes written, then freed (16 MiB and 128 MiB;
# glibc maps anything over 32 MiB afresh on every allocation by default).
STEP = """
import resource, sys, torch
from reinforge.backends.training.cpu_allocator import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def step():
    blocks = [torch.ones(n) for n in (4 * 2**20, 32 * 2**20, 4 * 2**20)]
    return sum(float(b[-1]) for b in blocks)
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str, env: dict[str, str] | None = None) -> int:
    done = subprocess.run([sys.executable, "-c", STEP, mode], capture_output=True, text=True, timeout=300, check=True, env=env)
    return int(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_kept_memory_stops_the_page_faults_of_a_repeated_step():
    default, kept = faults("default"), faults("keep")
    # 3 steps x 128 MiB mapped afresh = 3 x 32768 pages by default; none once the heap keeps them.
    assert default > 3 * 30_000, default
    assert kept < 1_000, kept


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's tunables: Linux only")
def test_the_same_settings_as_glibc_tunables_keep_the_memory_of_a_process_that_never_calls_mallopt():
    """What the side-by-side harness gives TRL's process (benchmarks/harness/sides.py, trl_env)."""
    env = {**os.environ, "GLIBC_TUNABLES": cpu_allocator.glibc_tunables()}
    assert faults("default", env) < 1_000


def test_off_linux_it_does_nothing(monkeypatch):
    monkeypatch.setattr(cpu_allocator.sys, "platform", "darwin")
    assert cpu_allocator.keep_freed_memory() is False


@pytest.mark.parametrize("keep", [True, False])
def test_the_dtensor_backend_applies_it_on_cpu_when_asked(tiny_model_dir, monkeypatch, keep):
    from reinforge.backends.training.dtensor import backend as dtensor_backend
    from reinforge.backends.training.dtensor.config import DTensorConfig
    from reinforge.core.run_config import PolicyConfig

    calls = []
    monkeypatch.setattr(dtensor_backend, "keep_freed_memory", lambda: calls.append(1) or True)
    policy = PolicyConfig(model_name=str(tiny_model_dir), train_global_batch_size=2, train_micro_batch_size=2)
    trainer = dtensor_backend.DTensorBackend(policy, DTensorConfig(device="cpu", keep_freed_memory=keep))
    trainer.shutdown()
    assert calls == ([1] if keep else [])
