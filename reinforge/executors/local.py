"""Where the workers run: in this process (`local`) or on Ray worker groups (`ray`).

An executor builds the three parts an algorithm drives — the training backend, the generation
backend and the environment — and hands back objects that implement the seams of
`reinforge.core.interfaces`. On `local` they are the plugin objects themselves; on `ray` they are
worker-group proxies with the same methods, so algorithm code never changes with the executor.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import attrs

from reinforge.core.constructors import build_generation_backend
from reinforge.core.errors import ReinforgeError
from reinforge.core.interfaces import Environment, GenerationBackend, TrainingBackend
from reinforge.core.registry import Registry
from reinforge.core.model_config import ModelConfig
from reinforge.core.run_config import ClusterConfig, EnvConfig, GenerationConfig, PolicyConfig
from reinforge.executors.checks import check_training_layout


class LocalExecutor:
    """Everything in this process; nothing imports Ray."""

    def __init__(self, cluster: ClusterConfig, registry: Registry) -> None:
        self.cluster = cluster
        self.registry = registry

    def training(self, policy: PolicyConfig, *, need_reference: bool, seed: int) -> TrainingBackend:
        # Under torchrun every rank runs this executor, and WORLD_SIZE says how many ranks train together.
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        workers = max(world_size, self.cluster.training_workers)
        check_training_layout(self.registry, policy, workers=workers, gpus=_computes_on_cuda(policy.backend_cfg))
        if world_size == 1 and self.cluster.training_workers > 1:
            raise ReinforgeError(
                f"the local executor trains in this one process, so cluster.training_workers="
                f"{self.cluster.training_workers} cannot be honoured; set cluster.executor: ray to start that many "
                "training workers, or cluster.training_workers: 1"
            )
        backend_cls = self.registry.training_backend(policy.backend)
        return backend_cls(policy.for_training(), policy.backend_cfg, need_reference=need_reference, seed=seed)

    def generation(self, model: ModelConfig, generation: GenerationConfig, *, seed: int) -> GenerationBackend:
        backend_cls = self.registry.generation_backend(generation.backend)
        sampling = attrs.evolve(generation, backend_cfg=None)  # the engine options travel on their own
        return build_generation_backend(
            backend_cls, model, generation.backend_cfg, generation=sampling, seed=seed, name=generation.backend
        )

    def environment(self, env: EnvConfig) -> Environment:
        env_cls = self.registry.environment(env.name)
        return env_cls(env.env_cfg) if env.env_cfg is not None else env_cls()

    def shutdown(self) -> None:
        pass


def _computes_on_cuda(options: Any) -> bool:
    """Whether a backend in this process will compute on a GPU: its options' explicit `device`, else CUDA if present."""
    choice = getattr(options, "device", "auto")
    if choice in ("cpu", "cuda"):
        return choice == "cuda"
    import torch

    return torch.cuda.is_available()


def make_executor(cluster: ClusterConfig, registry: Registry) -> Any:
    """The executor `cluster.executor` names (the Ray one is imported only when asked for)."""
    if cluster.executor == "local":
        return LocalExecutor(cluster, registry)
    ray_executor = importlib.import_module("reinforge.executors.ray.executor")
    return ray_executor.RayExecutor(cluster, registry)
