"""The checks every executor runs before it starts a training backend: can the backend run this layout?

Shared by the local executor (one process, or one rank of a torchrun launch) and the Ray executor
(a worker group of `cluster.training_workers` ranks), so that a backend's declared `Capabilities`
refuse the same layouts with the same message wherever the run is started.
"""

from __future__ import annotations

from reinforge.core.constructors import Capabilities
from reinforge.core.registry import Registry
from reinforge.core.run_config import PolicyConfig


def tensor_parallel_size(policy: PolicyConfig) -> int:
    """Ranks per data-parallel replica: the backend options' `tensor_parallel_size` (1 when it has none)."""
    return int(getattr(policy.backend_cfg, "tensor_parallel_size", 1) or 1)


def check_training_layout(registry: Registry, policy: PolicyConfig, *, workers: int, gpus: bool) -> None:
    """Raise a ReinforgeError when `policy.backend` declared it cannot run on `workers` ranks / this device.

    A backend that declared no capabilities is not checked (it may still guard itself, see the kit's
    `require_single_process`), except that it may not run with `policy.lora.enabled`: it would train
    every weight instead of adapters.
    """
    capabilities = registry.get("training_backend", policy.backend).capabilities
    lora = policy.lora.enabled
    if capabilities is None:
        if lora:
            Capabilities().check_lora(policy.backend)
        return
    capabilities.check_training(
        policy.backend, workers=workers, tensor_parallel=tensor_parallel_size(policy), gpus=gpus, lora=lora
    )
