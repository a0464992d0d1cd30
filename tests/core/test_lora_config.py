"""`policy.lora`: NeMo-RL's names and defaults, bad values refused at load naming the key, where the setting
reaches (the model description, the Python constructor), the capability check, and the run fingerprint."""

from __future__ import annotations

import pytest

import reinforge as rf
from reinforge.core.config import structure
from reinforge.core.constructors import Capabilities
from reinforge.core.errors import ConfigError, ReinforgeError
from reinforge.core.hookspecs import hookimpl
from reinforge.core.lora_config import LoRAConfig
from reinforge.core.registry import Registry
from reinforge.core.run_config import ClusterConfig, PolicyConfig
from reinforge.core.trainer_state import fingerprint_differences, run_fingerprint
from reinforge.executors.checks import check_training_layout
from reinforge.executors.local import LocalExecutor


def test_defaults_are_nemo_rls_dtensor_block():
    lora = LoRAConfig()
    assert (lora.enabled, lora.dim, lora.alpha, lora.dropout, lora.match_all_linear) == (False, 8, 32.0, 0.0, True)
    assert (lora.target_modules, lora.exclude_modules, lora.lora_A_init, lora.dropout_position) == ((), (), "xavier", "post")
    assert lora.scale == 4.0
    assert PolicyConfig(model_name="m").lora == lora


def test_yaml_keys_reach_the_policy_and_the_model_description():
    policy = structure({"model_name": "m", "lora": {"enabled": True, "dim": 16, "alpha": 32, "exclude_modules": ["lm_head"]}}, PolicyConfig)
    assert policy.lora == LoRAConfig(enabled=True, dim=16, alpha=32.0, exclude_modules=("lm_head",))
    assert policy.model.lora is policy.lora  # what generators are built from
    assert policy.for_training().lora == policy.lora


def test_bad_values_are_all_reported_at_load_naming_the_key():
    with pytest.raises(ConfigError) as caught:
        structure({"model_name": "m", "lora": {"enabled": True, "dim": 0, "alpha": 0, "dropout": 1.0}}, PolicyConfig)
    assert str(caught.value).splitlines()[1:] == [
        "  - 'dim' must be >= 1: 0 @ lora.dim",
        "  - 'alpha' must be > 0: 0.0 @ lora.alpha",
        "  - dropout must be in [0, 1) (the probability of zeroing an adapter input), got 1.0 @ lora.dropout",
    ]
    with pytest.raises(ConfigError, match=r"match_all_linear: false.*@ lora"):
        structure({"model_name": "m", "lora": {"enabled": True, "target_modules": ["q_proj"]}}, PolicyConfig)
    with pytest.raises(ConfigError, match=r"unknown key.*rank"):
        structure({"model_name": "m", "lora": {"rank": 8}}, PolicyConfig)


def test_python_constructor_takes_an_lora_config():
    spec = rf.backends.DTensorTraining("model/", lr=5e-5, lora=rf.LoRAConfig(enabled=True, dim=16, alpha=32))
    assert spec.policy.lora == LoRAConfig(enabled=True, dim=16, alpha=32.0) and spec.policy.optimizer.lr == 5e-5
    assert spec.policy.backend_cfg is None  # a shared policy setting, not a backend option


# --------------------------------------------------------------------------- the capability check
REFUSAL = (
    "policy.lora.enabled is true, but the training backend '{}' does not declare LoRA support (Capabilities(lora=True)), "
    "so it would silently train every weight; use policy.backend: dtensor, which trains adapters, or set "
    "policy.lora.enabled: false for full fine-tuning"
)


class Plugins:
    @hookimpl
    def reinforge_register_training_backends(self, register):
        register("plain", "builtins:object", capabilities=Capabilities(data_parallel=True))
        register("silent", "builtins:object")  # declares nothing


@pytest.fixture
def registry() -> Registry:
    return Registry.create(plugins=[("test", Plugins())])


def _lora_policy(backend: str) -> PolicyConfig:
    return PolicyConfig(model_name="unused", backend=backend, lora=LoRAConfig(enabled=True))


def test_capabilities_without_lora_refuse_it_before_the_device_check():
    with pytest.raises(ReinforgeError) as caught:
        Capabilities(lora=False, devices=("cuda",)).check_training("plain", workers=1, tensor_parallel=1, gpus=False, lora=True)
    assert str(caught.value) == REFUSAL.format("plain")  # the LoRA message on CPU, not the device one
    Capabilities(lora=True).check_training("ok", workers=1, tensor_parallel=1, gpus=False, lora=True)
    Capabilities(lora=False).check_training("plain", workers=1, tensor_parallel=1, gpus=False, lora=False)


def test_backends_that_declared_nothing_or_no_lora_are_refused_and_dtensor_is_not(registry):
    for name in ("plain", "silent"):
        with pytest.raises(ReinforgeError) as caught:
            check_training_layout(registry, _lora_policy(name), workers=1, gpus=False)
        assert str(caught.value) == REFUSAL.format(name)
    check_training_layout(registry, PolicyConfig(model_name="unused", backend="silent"), workers=1, gpus=False)
    check_training_layout(registry, _lora_policy("dtensor"), workers=2, gpus=False)


def test_megatron_is_refused_with_the_same_message_on_cpu(registry):
    assert registry.get("training_backend", "megatron").capabilities.lora is False
    assert registry.get("training_backend", "dtensor").capabilities.lora is True
    executor = LocalExecutor(ClusterConfig(), registry)
    with pytest.raises(ReinforgeError) as caught:
        executor.training(_lora_policy("megatron"), need_reference=False, seed=0)  # refused before building anything
    assert str(caught.value) == REFUSAL.format("megatron")


# --------------------------------------------------------------------------- the run fingerprint
def _config(lora: dict | None) -> dict:
    policy = {"model_name": "hub/model", "precision": "float32", "optimizer": {"lr": 1e-4}}
    if lora is not None:
        policy["lora"] = lora
    return {"algorithm": "sft", "sft": {}, "policy": policy, "data": {}}


def test_fingerprint_records_lora_so_a_switch_either_way_differs():
    off = run_fingerprint(_config({"enabled": False, "dim": 8}))
    assert off["lora"] == {"enabled": False}
    assert fingerprint_differences(off, run_fingerprint(_config({"enabled": False, "dim": 64}))) == []  # off is off
    on = run_fingerprint(_config({"enabled": True, "dim": 8, "alpha": 32}))
    assert fingerprint_differences(off, on) == ["lora.enabled: false (checkpoint) vs true (this run)"]
    assert fingerprint_differences(on, off) == [
        "lora.alpha: 32 (checkpoint) vs null (this run)",
        "lora.dim: 8 (checkpoint) vs null (this run)",
        "lora.enabled: true (checkpoint) vs false (this run)",
    ]
    assert fingerprint_differences(on, run_fingerprint(_config({"enabled": True, "dim": 16, "alpha": 32}))) == [
        "lora.dim: 8 (checkpoint) vs 16 (this run)"
    ]
