"""Each part receives only its own settings: a generator never sees the training backend's options and
vice versa (in a Ray worker group with its own interpreter, unpickling another part's options would
import a package that may not be installed there)."""

from __future__ import annotations

import attrs
import pytest

from reinforge.core.constructors import build_generation_backend
from reinforge.core.hookspecs import hookimpl
from reinforge.core.model_config import ModelConfig
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
    received: list[tuple[str, object, object, dict]] = []

    def __init__(self, policy, options, **kwargs) -> None:
        Recorder.received.append((type(self).__name__, policy, options, kwargs))


class FakeTraining(Recorder):
    pass


class FakeGeneration(Recorder):
    pass


class LegacyGeneration:
    """A generation backend written against the signature before ModelConfig: cls(policy, options, *, seed)."""

    def __init__(self, policy, options, *, seed: int) -> None:
        self.loaded = (policy.model_name, policy.tokenizer_name, policy.precision, policy.max_total_sequence_length)
        self.options, self.seed = options, seed


class Plugin:
    @hookimpl
    def reinforge_register_training_backends(self, register):
        register("fake_training", FakeTraining, config=TrainerOptions)

    @hookimpl
    def reinforge_register_generation_backends(self, register):
        register("fake_generation", FakeGeneration, config=EngineOptions)
        register("legacy_generation", LegacyGeneration, config=EngineOptions)


def _policy(generation_backend: str = "fake_generation") -> PolicyConfig:
    return PolicyConfig(
        model_name="m",
        precision="bfloat16",
        max_total_sequence_length=99,
        backend="fake_training",
        backend_cfg=TrainerOptions(),
        generation=GenerationConfig(backend=generation_backend, backend_cfg=EngineOptions(), max_new_tokens=7),
    )


def test_the_local_executor_gives_each_backend_only_its_own_options():
    policy = _policy()
    executor = LocalExecutor(ClusterConfig(), Registry.create(plugins=[("fakes", Plugin())]))
    Recorder.received.clear()
    executor.training(policy, need_reference=False, seed=0)
    executor.generation(policy.model, policy.generation, seed=3)
    (_, train_policy, train_options, _), (_, model, gen_options, gen_kwargs) = Recorder.received
    assert train_options == TrainerOptions() and train_policy.generation.backend_cfg is None
    assert train_policy.generation.max_new_tokens == 7 and train_policy.backend_cfg == TrainerOptions()
    # The generator gets the model's description, its own engine options and the sampling defaults: no optimizer,
    # no batch sizes, no training backend options.
    assert model == ModelConfig(model_name="m", precision="bfloat16", max_total_sequence_length=99)
    assert gen_options == EngineOptions() and gen_kwargs["seed"] == 3
    sampling = gen_kwargs["generation"]
    assert isinstance(sampling, GenerationConfig) and sampling.max_new_tokens == 7 and sampling.backend_cfg is None
    assert not hasattr(model, "optimizer") and not hasattr(model, "backend_cfg")


def test_a_generation_backend_with_the_old_signature_keeps_working_with_a_warning():
    policy = _policy("legacy_generation")
    executor = LocalExecutor(ClusterConfig(), Registry.create(plugins=[("fakes", Plugin())]))
    with pytest.warns(UserWarning, match=r"cls\(model: ModelConfig, options, \*, generation: GenerationConfig, seed: int\)"):
        backend = executor.generation(policy.model, policy.generation, seed=5)
    assert backend.loaded == ("m", None, "bfloat16", 99) and backend.options == EngineOptions() and backend.seed == 5


def test_a_backend_taking_keyword_arguments_gets_the_current_call():
    def factory(model, options, **kwargs):
        return ("built", model, options, kwargs)

    built = build_generation_backend(factory, ModelConfig(model_name="m"), None, generation=GenerationConfig(), seed=1)
    assert built[3] == {"generation": GenerationConfig(), "seed": 1}
