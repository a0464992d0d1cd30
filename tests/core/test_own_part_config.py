"""Each part receives only its own settings: a generator never sees the training backend's options and
vice versa (in a Ray worker group with its own interpreter, unpickling another part's options would
import a package that may not be installed there)."""

from __future__ import annotations

import attrs

from reinforge.core.hookspecs import hookimpl
from reinforge.core.registry import Registry
from reinforge.core.run_config import ClusterConfig, GenerationConfig, PolicyConfig
from reinforge.executors.local import LocalExecutor


@attrs.define(frozen=True)
class TrainerOptions:
    optimizer_trick: bool = True


@attrs.define(frozen=True)
class EngineOptions:
    kv_cache_gb: int = 4


class Recorder:
    received: list[tuple[str, PolicyConfig, object]] = []

    def __init__(self, policy, options, **kwargs) -> None:
        Recorder.received.append((type(self).__name__, policy, options))


class FakeTraining(Recorder):
    pass


class FakeGeneration(Recorder):
    pass


class Plugin:
    @hookimpl
    def reinforge_register_training_backends(self, register):
        register("fake_training", FakeTraining, config=TrainerOptions)

    @hookimpl
    def reinforge_register_generation_backends(self, register):
        register("fake_generation", FakeGeneration, config=EngineOptions)


def test_the_local_executor_gives_each_backend_only_its_own_options():
    policy = PolicyConfig(
        model_name="m",
        backend="fake_training",
        backend_cfg=TrainerOptions(),
        generation=GenerationConfig(backend="fake_generation", backend_cfg=EngineOptions(), max_new_tokens=7),
    )
    executor = LocalExecutor(ClusterConfig(), Registry.create(plugins=[("fakes", Plugin())]))
    Recorder.received.clear()
    executor.training(policy, need_reference=False, seed=0)
    executor.generation(policy, seed=0)
    (_, train_policy, train_options), (_, gen_policy, gen_options) = Recorder.received
    assert train_options == TrainerOptions() and train_policy.generation.backend_cfg is None
    assert train_policy.generation.max_new_tokens == 7 and train_policy.backend_cfg == TrainerOptions()
    assert gen_options == EngineOptions() and gen_policy.backend_cfg is None
    assert gen_policy.generation.backend_cfg == EngineOptions() and gen_policy.model_name == "m"
