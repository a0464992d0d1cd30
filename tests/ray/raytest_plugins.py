"""A local plugin module for the Ray tests, loaded through a plugins.toml (`local = [".../raytest_plugins.py"]`).

Registering imports nothing heavy; the implementations live in `raytest_impl.py` beside this file,
which a Ray worker can import only after its registry has put this folder on sys.path — exactly
the path a user's local plugin takes.
"""

from __future__ import annotations

from reinforge.core.constructors import Capabilities
from reinforge.core.hookspecs import hookimpl
from reinforge.core.registry import Register


@hookimpl
def reinforge_register_environments(register: Register) -> None:
    register("raytest_checksum", "raytest_impl:ChecksumEnvironment", description="deterministic pseudo-random reward")
    register(
        "raytest_crash_once",
        "raytest_impl:CrashOnceEnvironment",
        config="raytest_impl:CrashOnceConfig",
        description="dies on its first step (while the marker file is missing), then scores like raytest_checksum",
    )


@hookimpl
def reinforge_register_training_backends(register: Register) -> None:
    register(
        "raytest_crashing_dtensor",
        "raytest_impl:CrashingDTensorBackend",
        config="raytest_impl:CrashingDTensorConfig",
        description="dtensor, except that one rank dies in train() once (while the marker file is missing)",
    )
    register(
        "raytest_one_rank",
        "raytest_impl:CrashingDTensorBackend",  # never built: the executor refuses 2 workers first
        description="declares no data parallelism",
        capabilities=Capabilities(),
    )
