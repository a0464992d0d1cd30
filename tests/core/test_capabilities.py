"""Backends declare what they can do when they register; the executor refuses layouts they cannot run."""

from __future__ import annotations

import pytest

from reinforge.core.constructors import CUDA_ON_CPU_ENV, Capabilities
from reinforge.core.errors import ReinforgeError
from reinforge.core.hookspecs import hookimpl
from reinforge.core.registry import Registry
from reinforge.core.run_config import ClusterConfig, PolicyConfig
from reinforge.executors.local import LocalExecutor

ONE_RANK_ON_TWO = (
    "the training backend 'one_rank' has no data parallelism, but cluster.training_workers=2 would make 2 replicas, "
    "each training its own drifting copy; set cluster.training_workers=1, or use a backend that shards the batch "
    "(e.g. dtensor)"
)


class SingleProcessPlugin:
    @hookimpl
    def reinforge_register_training_backends(self, register):
        register("one_rank", "builtins:object", capabilities=Capabilities(devices=("cpu",)))


def test_a_declaration_reaches_the_registry_and_the_built_ins_declare_their_parallelism():
    registry = Registry.create(plugins=[("single", SingleProcessPlugin())])
    assert registry.get("training_backend", "one_rank").capabilities == Capabilities()
    dtensor = registry.get("training_backend", "dtensor").capabilities
    assert dtensor == Capabilities(data_parallel=True, tensor_parallel=True, lora=True, devices=("cpu", "cuda"))
    megatron = registry.get("training_backend", "megatron").capabilities
    assert megatron == Capabilities(data_parallel=True, tensor_parallel=True, devices=("cuda",))


def test_two_workers_without_data_parallelism_fail_naming_the_fix():
    single = Capabilities()
    single.check_training("one_rank", workers=1, tensor_parallel=1, gpus=False)  # the one layout it runs
    with pytest.raises(ReinforgeError, match=r"no data parallelism.*training_workers=2 would make 2 replicas.*training_workers=1"):
        single.check_training("one_rank", workers=2, tensor_parallel=1, gpus=False)


def test_tensor_parallel_and_devices_are_checked():
    tp_only = Capabilities(tensor_parallel=True, devices=("cuda",))
    tp_only.check_training("tp", workers=2, tensor_parallel=2, gpus=True)  # one replica of 2 ranks: fine
    with pytest.raises(ReinforgeError, match="no data parallelism"):
        tp_only.check_training("tp", workers=4, tensor_parallel=2, gpus=True)  # 2 replicas
    with pytest.raises(ReinforgeError, match="runs on cuda, not cpu"):
        tp_only.check_training("tp", workers=2, tensor_parallel=2, gpus=False)
    with pytest.raises(ReinforgeError, match="no tensor parallelism"):
        Capabilities(data_parallel=True).check_training("dp", workers=2, tensor_parallel=2, gpus=False)
    Capabilities(data_parallel=True).check_training("dp", workers=4, tensor_parallel=1, gpus=False)


def test_the_kit_guard_stops_a_single_process_backend_started_as_one_of_several_ranks(monkeypatch):
    from reinforge.backends.kit import require_single_process

    monkeypatch.setenv("WORLD_SIZE", "1")
    require_single_process("one_rank")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ReinforgeError, match="'one_rank' has no data parallelism.*one of 2 training workers"):
        require_single_process("one_rank")


@pytest.fixture
def one_rank_registry() -> Registry:
    return Registry.create(plugins=[("single", SingleProcessPlugin())])


def test_the_local_executor_refuses_two_workers_for_a_backend_without_data_parallelism(one_rank_registry, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    policy = PolicyConfig(model_name="unused", backend="one_rank")
    executor = LocalExecutor(ClusterConfig(training_workers=2), one_rank_registry)
    with pytest.raises(ReinforgeError) as caught:
        executor.training(policy, need_reference=False, seed=0)  # refused before the backend is built
    assert str(caught.value) == ONE_RANK_ON_TWO


def test_the_local_executor_as_one_of_two_torchrun_ranks_refuses_it_too(one_rank_registry, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")  # what torchrun sets in each of its 2 processes
    policy = PolicyConfig(model_name="unused", backend="one_rank")
    with pytest.raises(ReinforgeError) as caught:
        LocalExecutor(ClusterConfig(), one_rank_registry).training(policy, need_reference=False, seed=0)
    assert str(caught.value) == ONE_RANK_ON_TWO


def test_the_local_executor_refuses_worker_counts_it_cannot_start(monkeypatch):
    """A backend that could shard over 2 ranks is not silently run as one: the local executor has one process."""
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    policy = PolicyConfig(model_name="unused", backend="dtensor")
    with pytest.raises(ReinforgeError) as caught:
        LocalExecutor(ClusterConfig(training_workers=2), Registry.create()).training(policy, need_reference=False, seed=0)
    assert str(caught.value) == (
        "the local executor trains in this one process, so cluster.training_workers=2 cannot be honoured; set "
        "cluster.executor: ray to start that many training workers, or cluster.training_workers: 1"
    )


def test_megatron_on_a_cpu_only_machine_is_refused_unless_the_test_shim_emulates_cuda(monkeypatch):
    import torch

    from reinforge.backends.training.megatron.config import MegatronConfig
    from reinforge.executors.checks import check_training_layout

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv(CUDA_ON_CPU_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    registry = Registry.create()
    policy = PolicyConfig(model_name="unused", backend="megatron", backend_cfg=MegatronConfig())
    expected = (
        "the training backend 'megatron' runs on cuda, not cpu; it needs an NVIDIA GPU: run on a machine with CUDA "
        "(local executor) or on GPU workers (ray: cluster.gpus_per_node > 0)"
    )
    with pytest.raises(ReinforgeError) as caught:
        LocalExecutor(ClusterConfig(), registry).training(policy, need_reference=False, seed=0)
    assert str(caught.value) == expected
    with pytest.raises(ReinforgeError) as caught:  # the Ray executor's check on CPU workers: the same refusal
        check_training_layout(registry, policy, workers=2, gpus=False)
    assert str(caught.value) == expected
    monkeypatch.setenv(CUDA_ON_CPU_ENV, "1")  # what tests/backends/megatron_cpu/cpu_shim.py sets while installed
    check_training_layout(registry, policy, workers=2, gpus=False)
    check_training_layout(registry, policy, workers=4, gpus=True)
