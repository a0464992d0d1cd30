"""`RayExecutor`: the training ranks, engine replicas and environments as Ray worker groups.

    cluster:
      executor: ray
      training_workers: 2        # torch.distributed ranks (gloo on CPU, NCCL on GPU)
      generation_workers: 1      # engine replicas
      environment_workers: 2     # environment actors

It connects to `cluster.address`, or starts a local Ray (no dashboard; token authentication
off unless `RAY_AUTH_MODE` says otherwise), reserves placement groups (`ray_placement`), and
returns proxies that implement the seams, so the algorithm runs unchanged. Workers rebuild the
driver's plugin set from `registry.settings` and construct their plugin by name; core never
imports a backend. Each group may run its own interpreter (`cluster.*_runtime`).
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
from typing import Any

import attrs

from reinforge.executors.ray.colocation import Colocation
from reinforge.executors.ray.environment_group import RayEnvironment
from reinforge.core.errors import ReinforgeError
from reinforge.executors.ray.listeners import prepare_local_ray
from reinforge.executors.ray.generation_group import RayGenerationBackend
from reinforge.executors.ray.placement import Placement, Slot, check_free_cpus, plan_placement
from reinforge.executors.ray.workers import EnvironmentWorker, GenerationWorker, TrainingWorker
from reinforge.executors.ray.refit_collective import PeerRefit
from reinforge.core.registry import Registry
from reinforge.executors.checks import check_training_layout, tensor_parallel_size
from reinforge.core.model_config import ModelConfig
from reinforge.core.run_config import ClusterConfig, EnvConfig, GenerationConfig, PolicyConfig, WorkerRuntimeConfig
from reinforge.executors.ray.training_group import RayTrainingBackend
from reinforge.executors.ray.weight_sync import RefitStats
from reinforge.executors.ray.worker_group import WorkerGroup, WorkerInfo

log = logging.getLogger(__name__)


class RayExecutor:
    """Builds Ray worker groups for the seams; `shutdown` releases them (and a Ray it started)."""

    def __init__(self, cluster: ClusterConfig, registry: Registry) -> None:
        self.cluster = cluster
        self.registry = registry
        self.started_ray = _connect(cluster)
        self.plan = plan_placement(cluster)
        self.placement = Placement(self.plan, cluster.placement_timeout_s)
        self.colocation = Colocation(cluster.colocated)
        self.refit_stats = RefitStats(transport=cluster.refit_transport)
        # collective / cuda_ipc refit: set up on the first refit, between the groups made below
        self.peer_refit = PeerRefit(cluster, self.refit_stats) if cluster.refit_transport != "object_store" else None
        self.groups: list[WorkerGroup] = []

    # ------------------------------------------------------------------ the Executor protocol
    def training(self, policy: PolicyConfig, *, need_reference: bool, seed: int) -> RayTrainingBackend:
        """One actor per rank, joined into a torch.distributed group, each building `policy.backend`.

        Returns once the actors run; the backend builds in the background (the group's first use waits).
        """
        self._check_reproducible("training_backend", policy.backend)
        n = self.cluster.training_workers
        tp = tensor_parallel_size(policy)
        check_training_layout(self.registry, policy, workers=n, gpus=self.cluster.training_gpus > 0)
        # The ranks of one model copy, which all receive the same rows: tensor (x pipeline x context) parallel.
        replica = int(getattr(policy.backend_cfg, "model_parallel_size", tp) or tp)
        if n % replica:
            sizes = f"tensor_parallel_size ({tp})" if replica == tp else f"model-parallel size ({replica} ranks per model copy)"
            raise ReinforgeError(
                f"cluster.training_workers ({n}) must be a multiple of the backend's {sizes}: "
                "each data-parallel replica needs that many ranks"
            )
        payload = _pickle((policy.backend, policy.for_training(), policy.backend_cfg, need_reference, seed))  # only its own part's options
        group = self._start("training", TrainingWorker, self.plan.training, payload, self.cluster.training_runtime)
        group.ready()  # the rendezvous needs rank 0's address and every rank's node
        master_addr, master_port = group.gather([group.actors[0].rendezvous_address.remote()], [0], what="start")[0]
        local_ranks = _local_ranks(group.infos)
        refs = [
            actor.setup.remote(
                master_addr=master_addr,
                master_port=master_port,
                world_size=n,
                local_rank=local_ranks[rank],
                dist_backend="cpu:gloo,cuda:nccl" if self.cluster.training_gpus > 0 else "gloo",
                threads=_threads(self.cluster.cpus_per_worker),
            )
            for rank, actor in enumerate(group.actors)
        ]
        group.defer(refs, "setup", lambda _: None)
        proxy = RayTrainingBackend(
            group, tp_size=replica, colocation=self.colocation, refit_stats=self.refit_stats, peer_refit=self.peer_refit
        )
        if self.peer_refit is not None:
            self.peer_refit.set_training(group)
        self.colocation.training = proxy
        return proxy

    def generation(self, model: ModelConfig, generation: GenerationConfig, *, seed: int) -> RayGenerationBackend:
        """`cluster.generation_workers` engine replicas building `generation.backend` (in the background)."""
        name = generation.backend
        self._check_reproducible("generation_backend", name)
        slots = self.plan.generation
        sampling = attrs.evolve(generation, backend_cfg=None)  # the engine options travel on their own
        payloads = [_pickle((name, model, generation.backend_cfg, sampling, seed + r)) for r in range(len(slots))]
        group = self._start("generation", GenerationWorker, slots, payloads, self.cluster.generation_runtime)
        proxy = RayGenerationBackend(group, colocation=self.colocation, refit_stats=self.refit_stats)
        threads = _threads(self.cluster.generation_cpus)
        group.defer([a.setup.remote(threads=threads) for a in group.actors], "setup", proxy.set_pad_token_ids)
        if self.peer_refit is not None:  # colocated: replica r shares the bundle (devices) of training rank `bundle`
            self.peer_refit.set_generation(group, [slot.bundle if self.cluster.colocated else 0 for slot in slots])
        self.colocation.generation = proxy
        return proxy

    def environment(self, env: EnvConfig) -> RayEnvironment:
        """`cluster.environment_workers` actors of environment `env.name`, restarted by Ray when they crash."""
        self._check_reproducible("environment", env.name)
        check_free_cpus(self.cluster, _free_cpus(), what=f"the {self.cluster.environment_workers} environment actor(s)")
        payload = _pickle((env.name, env.env_cfg))
        group = self._start(
            f"environment '{env.name}'",
            EnvironmentWorker,
            [None] * self.cluster.environment_workers,
            payload,
            self.cluster.environment_runtime,
            max_restarts=self.cluster.environment_max_restarts,
        )
        proxy = RayEnvironment(group, name=env.name)
        group.defer([a.summed_metrics.remote() for a in group.actors], "setup", proxy.set_summed_metrics)
        return proxy

    def shutdown(self) -> None:
        """Stop every worker this executor started, free its placement groups, and stop Ray if it started it."""
        import ray

        if self.peer_refit is not None:
            self.peer_refit.close()
        for group in self.groups:
            group.kill()
        self.groups = []
        if ray.is_initialized():
            self.placement.remove()
            if self.started_ray:
                ray.shutdown()
                self.started_ray = False

    # ------------------------------------------------------------------ helpers
    def _start(
        self,
        name: str,
        worker_cls: type,
        slots: list[Slot | None],
        payload: bytes | list[bytes],
        runtime: WorkerRuntimeConfig,
        *,
        max_restarts: int = 0,
    ) -> WorkerGroup:
        """Create one actor per slot and learn where each runs."""
        import ray

        remote_cls = ray.remote(worker_cls)
        runtime_env = _runtime_env(runtime, check_locally=not self.cluster.address)
        actors = []
        for index, slot in enumerate(slots):
            options: dict[str, Any] = {"num_cpus": self.cluster.cpus_per_worker, "max_restarts": max_restarts}
            if slot is not None:
                options.update(num_cpus=slot.num_cpus, num_gpus=slot.num_gpus, scheduling_strategy=self.placement.strategy_for(slot))
            if runtime_env:
                options["runtime_env"] = runtime_env
            data = payload[index] if isinstance(payload, list) else payload
            actors.append(remote_cls.options(**options).remote(name, index, self.registry.settings, data))
        group = WorkerGroup(name, actors, [WorkerInfo(group=name, index=i) for i in range(len(actors))])
        self.groups.append(group)
        refs = [actor.where.remote() for actor in actors]
        group.defer(refs, "start", lambda infos: _started(group, infos), timeout_s=self.cluster.worker_start_timeout_s)
        return group

    def _check_reproducible(self, kind: str, name: str) -> None:
        """Workers rebuild plugins from settings, so a plugin registered only in this process cannot reach them."""
        spec = self.registry.get(kind, name)
        if spec.source.origin == "in-process":
            raise ReinforgeError(
                f"the {kind.replace('_', ' ')} '{name}' was registered in this process only (Registry.create(plugins=...)), "
                "so Ray workers cannot load it; put it in a module listed under `local` in your plugins.toml, or "
                "install it as a package with a `reinforge` entry point"
            )


def _free_cpus() -> tuple[float, float]:
    """(CPUs free outside every placement group, CPUs the Ray cluster has in all)."""
    import ray

    return ray.available_resources().get("CPU", 0.0), ray.cluster_resources().get("CPU", 0.0)


def _connect(cluster: ClusterConfig) -> bool:
    """Join `cluster.address` or start a local Ray; True if this call started it."""
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
    if cluster.address:
        kwargs["address"] = cluster.address
    else:  # a Ray of our own: loopback only unless cluster.bind_address opts in (see executors/ray/listeners.py)
        kwargs.update(prepare_local_ray(cluster.bind_address))
        if cluster.local_num_cpus is not None:
            kwargs["num_cpus"] = cluster.local_num_cpus
    try:
        ray.init(**kwargs)
    except ConnectionError as exc:
        raise ReinforgeError(
            f"cannot connect to the Ray cluster at cluster.address={cluster.address!r}: {exc}; start it with "
            "`ray start --head` (or check the address), or set cluster.address: null to start a local Ray"
        ) from None
    return True


def _runtime_env(runtime: WorkerRuntimeConfig, *, check_locally: bool) -> dict[str, Any]:
    """Ray's runtime_env for a group; on a local cluster a missing interpreter fails here, not in Ray's retry loop."""
    env: dict[str, Any] = {}
    if runtime.py_executable:
        program = shlex.split(runtime.py_executable)[0] if runtime.py_executable.strip() else ""
        if check_locally and not (shutil.which(program) or (os.path.isfile(program) and os.access(program, os.X_OK))):
            raise ReinforgeError(
                f"py_executable {runtime.py_executable!r} (cluster.*_runtime) is not an executable program on this "
                "machine; point it at a virtual environment's bin/python, or a launcher such as `uv run --project DIR`"
            )
        env["py_executable"] = runtime.py_executable
    if runtime.uv:
        env["uv"] = list(runtime.uv)
    if runtime.env_vars:
        env["env_vars"] = dict(runtime.env_vars)
    return env


def _started(group: WorkerGroup, infos: list[WorkerInfo]) -> None:
    group.infos = infos
    log.info("started %s", "; ".join(info.describe() for info in infos))


def _local_ranks(infos: list[WorkerInfo]) -> list[int]:
    """Each rank's index among the ranks on its node (torchrun's LOCAL_RANK)."""
    seen: dict[str, int] = {}
    out = []
    for info in infos:
        out.append(seen.get(info.node_id, 0))
        seen[info.node_id] = out[-1] + 1
    return out


def _threads(cpus: float) -> int:
    return max(1, int(cpus))


def _pickle(value: Any) -> bytes:
    import cloudpickle

    return cloudpickle.dumps(value)
