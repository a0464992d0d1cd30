"""Megatron-core tests on the CPU through the test-only shim (cpu_shim.py).

Not collected without megatron-core. The shim is installed for this package's tests only and
removed after them, so other tests in the same pytest process run on unpatched torch. On a
machine with a GPU these CPU-shim tests are skipped: tests/gpu/test_megatron_gpu.py runs Megatron
there for real. (This folder is not called `megatron`: pytest puts tests/backends on sys.path,
where a folder of that name would shadow the real `megatron` package.)
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest

if importlib.util.find_spec("megatron") is None:
    collect_ignore_glob = ["test_*.py"]  # the megatron extra is not installed: nothing here can run
else:

    @pytest.fixture(scope="package", autouse=True)
    def _cpu_shim() -> Iterator[None]:
        import torch

        if torch.cuda.is_available():
            pytest.skip("CPU-shim tests: with a GPU, tests/gpu/test_megatron_gpu.py runs Megatron-core for real")
        from megatron_cpu import cpu_shim

        cpu_shim.install()
        yield
        cpu_shim.uninstall()
