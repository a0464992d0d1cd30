"""The Ray actors: one training rank, one generation replica, one environment worker.

Each actor rebuilds the driver's plugin set from `RegistrySettings` (built-ins, entry points, the
project's plugins.toml with its local modules) and constructs its plugin *by name*, so a worker
never needs the driver's objects, and core never imports a backend. The constructor arguments
travel as cloudpickled bytes and are unpickled only after the registry has loaded, because an
options class may live in a local plugin module that the worker can import only then.

These classes are plain; `reinforge.executors.ray.executor` turns them into actors with `ray.remote`.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from reinforge.executors.ray.refit_collective import BucketLayout, RefitEndpoint, bucket_views, cuda_device_uuid, open_ipc_buffer
from reinforge.core.constructors import build_generation_backend
from reinforge.core.registry import Registry, RegistrySettings
from reinforge.executors.ray.weight_sync import PackedBucket, pack_bucket, unpack_bucket
from reinforge.executors.ray.worker_group import WorkerInfo


class _PluginWorker:
    """What every worker shares: the registry, the deferred constructor arguments, self-description."""

    def __init__(self, group: str, index: int, settings: RegistrySettings, payload: bytes) -> None:
        self.group = group
        self.index = index
        self.settings = settings
        self.payload = payload
        self.registry: Registry | None = None
        self.plugin: Any = None
        self._refit: RefitEndpoint | None = None  # collective / cuda_ipc refit, made on the first refit

    def _arguments(self) -> Any:
        import cloudpickle

        self.registry = Registry.create(self.settings)
        return cloudpickle.loads(self.payload)

    def where(self) -> WorkerInfo:
        import ray

        context = ray.get_runtime_context()
        gpus = context.get_accelerator_ids().get("GPU", [])
        return WorkerInfo(
            group=self.group,
            index=self.index,
            node_ip=ray.util.get_node_ip_address(),
            node_id=context.get_node_id(),
            pid=os.getpid(),
            gpu_ids=tuple(str(g) for g in gpus),
        )

    def python(self, env_names: tuple[str, ...] = ()) -> dict[str, Any]:
        """The interpreter this worker runs and selected environment variables (isolated-environment checks)."""
        return {"executable": sys.executable, "prefix": sys.prefix, "env": {k: os.environ.get(k) for k in env_names}}

    def plugin_listing(self) -> list[tuple[str, str, str]]:
        """(kind, name, source) of every plugin this worker's registry knows."""
        registry = self.registry or Registry.create(self.settings)
        return [(spec.kind, spec.name, str(spec.source)) for spec in registry.specs()]

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Run a seam method of the plugin."""
        return getattr(self.plugin, method)(*args, **kwargs)

    def attribute(self, name: str) -> Any:
        """An attribute of the plugin (inspection and tests, e.g. whether an engine is asleep)."""
        return getattr(self.plugin, name, None)

    def refit(self, method: str, *args: Any) -> Any:
        """Run a `RefitEndpoint` method (host_store, join, send, release, close, ...; see refit_collective)."""
        if method == "cuda_uuid":
            return cuda_device_uuid()
        if self._refit is None:
            self._refit = RefitEndpoint()
        return getattr(self._refit, method)(*args)

    def _close_refit(self) -> None:
        if self._refit is not None:
            self._refit.close()
            self._refit = None


class TrainingWorker(_PluginWorker):
    """One rank of the training backend, inside a torch.distributed group the worker group sets up."""

    def __init__(self, group: str, index: int, settings: RegistrySettings, payload: bytes) -> None:
        super().__init__(group, index, settings, payload)
        self._weights: Any = None

    def rendezvous_address(self) -> tuple[str, int]:
        """This node's address and a free port, for rank 0 to host the process-group store."""
        from reinforge.executors.ray.listeners import free_port, worker_bind_host

        host = worker_bind_host()  # loopback on a single-node run: the store binds there, not on every interface
        return host, free_port(host)

    def setup(self, *, master_addr: str, master_port: int, world_size: int, local_rank: int, dist_backend: str, threads: int) -> None:
        """Join the process group (every rank at once), then build the backend by name."""
        import torch
        import torch.distributed as dist

        os.environ.update({
            "MASTER_ADDR": master_addr,
            "MASTER_PORT": str(master_port),
            "RANK": str(self.index),
            "WORLD_SIZE": str(world_size),
            "LOCAL_RANK": str(local_rank),
        })
        torch.set_num_threads(threads)
        backend_name, policy, options, need_reference, seed = self._arguments()
        if world_size > 1 and not dist.is_initialized():
            from reinforge.executors.ray.listeners import host_tcp_store, restrict_gloo

            restrict_gloo(master_addr)
            if self.index == 0:
                store = host_tcp_store(master_addr, master_port, 600.0)
            else:
                store = dist.TCPStore(master_addr, master_port, is_master=False)
            dist.init_process_group(dist_backend, store=store, rank=self.index, world_size=world_size)
        backend_cls = self.registry.training_backend(backend_name)
        self.plugin = backend_cls(policy, options, need_reference=need_reference, seed=seed)

    def begin_weights(self, bucket_bytes: int) -> None:
        """Start a `named_weights` stream; every rank must step it together (gathers are collective)."""
        self._weights = iter(self.plugin.named_weights(bucket_bytes))

    def next_weights(self, keep: bool) -> list[Any] | bool | None:
        """Gather the next bucket. If `keep`, write it to the object store and return [its ref];
        else drop it and return True. None at the end of the stream.

        `ray.put` here rather than returning the bucket: the store then reuses memory it has
        already mapped, where a large return value is copied into fresh pages (~10x slower here).
        """
        import ray

        bucket = next(self._weights, None)
        if bucket is None:
            self._weights = None
            return None
        return [ray.put(pack_bucket(bucket))] if keep else True

    def stage_weights(self, number: int, keep: bool, device: str, share: bool) -> Any:
        """Gather the next bucket; if `keep`, stage it as bucket `number` for a collective or CUDA IPC refit
        and return its layout (and IPC handle), else drop it and return True. None at the end of the stream."""
        bucket = next(self._weights, None)
        if bucket is None:
            self._weights = None
            return None
        return self.refit("stage", number, bucket, device, share) if keep else True

    def shutdown(self) -> None:
        import torch.distributed as dist

        self._weights = None
        self._close_refit()
        if self.plugin is not None:
            self.plugin.shutdown()
            self.plugin = None
        if dist.is_initialized():
            dist.destroy_process_group()


class GenerationWorker(_PluginWorker):
    """One data-parallel engine replica (its engine may itself use several GPUs of its bundle)."""

    def setup(self, *, threads: int) -> int | None:
        """Build the backend by name; returns its pad token id (used to pad reassembled outputs)."""
        import torch

        torch.set_num_threads(threads)
        backend_name, model, options, sampling, seed = self._arguments()
        backend_cls = self.registry.generation_backend(backend_name)
        self.plugin = build_generation_backend(backend_cls, model, options, generation=sampling, seed=seed, name=backend_name)
        pad = getattr(self.plugin, "pad_token_id", None)
        return int(pad) if isinstance(pad, int) else None

    def update_weights_packed(self, packed: PackedBucket) -> int:
        """Load one bucket read from the object store; returns its size in bytes."""
        self.plugin.update_weights(unpack_bucket(packed))
        return packed.nbytes

    def receive_weights(self, layout: BucketLayout, ipc_handle: Any = None) -> int:
        """Load one bucket sent by the trainer: by broadcast, or (with `ipc_handle`) mapped from its GPU memory."""
        if ipc_handle is None:
            flat = self.refit("receive", layout)
            self.plugin.update_weights(bucket_views(flat, layout))
            return layout.nbytes
        import torch

        flat = open_ipc_buffer(ipc_handle)
        self.plugin.update_weights(bucket_views(flat, layout))
        torch.cuda.synchronize()  # our copies are done before the driver lets the trainer free the buffer
        del flat
        return layout.nbytes

    def shutdown(self) -> None:
        self._close_refit()
        if self.plugin is not None:
            self.plugin.shutdown()
            self.plugin = None


class EnvironmentWorker(_PluginWorker):
    """One environment instance; built on first use, so a restarted actor rebuilds it by itself."""

    def _environment(self) -> Any:
        if self.plugin is None:
            name, env_cfg = self._arguments()
            env_cls = self.registry.environment(name)
            self.plugin = env_cls(env_cfg) if env_cfg is not None else env_cls()
        return self.plugin

    def summed_metrics(self) -> tuple[str, ...]:
        """Metric names the environment reports as counts (summed, not averaged, when chunks merge)."""
        return tuple(getattr(self._environment(), "summed_metrics", ()))

    def step(self, conversations: list[list[dict[str, str]]], metadata: list[dict[str, Any]]) -> Any:
        return self._environment().step(conversations, metadata)

    def shutdown(self) -> None:
        if self.plugin is not None:
            self.plugin.shutdown()
            self.plugin = None
