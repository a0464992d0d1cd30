"""TEST-ONLY: the `reinforge` command with the CPU shim installed first (see cpu_shim.py for why and what).

    python tests/backends/megatron_cpu/shimmed_cli.py train --config ... policy.backend=megatron
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/backends
    from megatron_cpu import cpu_shim

    cpu_shim.install()
    from reinforge.cli.main import main

    sys.exit(main())
