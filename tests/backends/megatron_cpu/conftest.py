"""Megatron-core tests run on the CPU through the test-only shim (cpu_shim.py); not collected without megatron-core.

(This folder is not called `megatron`: pytest puts tests/backends on sys.path, where a folder
of that name would shadow the real `megatron` package.)
"""

from __future__ import annotations

import importlib.util

if importlib.util.find_spec("megatron") is None:
    collect_ignore_glob = ["test_*.py"]  # the megatron extra is not installed: nothing here can run
else:
    from megatron_cpu import cpu_shim

    cpu_shim.install()
