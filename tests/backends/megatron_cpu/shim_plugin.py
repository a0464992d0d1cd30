"""TEST-ONLY local plugin module: importing it installs the CPU shim (cpu_shim.py) in the importing process.

Why a plugin: a Ray worker rebuilds the registry from the project's plugins.toml before it builds
its training backend, so listing this file there installs the shim in every worker too, exactly
where `megatron` runs. It registers nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/backends
from megatron_cpu import cpu_shim  # noqa: E402

cpu_shim.install()
