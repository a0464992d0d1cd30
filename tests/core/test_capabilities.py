"""Backends declare what they can do when they register; the executor refuses layouts they cannot run."""

from __future__ import annotations

import pytest

from reinforge.core.constructors import Capabilities
from reinforge.core.errors import ReinforgeError
from reinforge.core.hookspecs import hookimpl
from reinforge.core.registry import Registry


class SingleProcessPlugin:
    @hookimpl
    def reinforge_register_training_backends(self, register):
        register("one_rank", "builtins:object", capabilities=Capabilities(devices=("cpu",)))


def test_a_declaration_reaches_the_registry_and_dtensor_declares_its_parallelism():
    registry = Registry.create(plugins=[("single", SingleProcessPlugin())])
    assert registry.get("training_backend", "one_rank").capabilities == Capabilities()
    dtensor = registry.get("training_backend", "dtensor").capabilities
    assert dtensor.data_parallel and dtensor.tensor_parallel and dtensor.devices == ("cpu", "cuda")


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
