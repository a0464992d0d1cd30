"""`reinforge plugins list --kind training_backend` shows dtensor and megatron, with the install hint when megatron-core is missing."""

from __future__ import annotations

import importlib.util
import json

import pytest

from reinforge.cli.main import main


@pytest.fixture
def in_empty_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no project plugins.toml around
    return tmp_path


def _training_backends(capsys) -> dict[str, dict]:
    assert main(["plugins", "list", "--kind", "training_backend", "--json"]) == 0
    return {p["name"]: p for p in json.loads(capsys.readouterr().out)["plugins"]}


def test_both_training_backends_are_listed(in_empty_dir, capsys):
    backends = _training_backends(capsys)
    assert set(backends) == {"dtensor", "megatron"}
    assert backends["megatron"]["source"] == "built-in" and backends["dtensor"]["available"] is True
    installed = importlib.util.find_spec("megatron") is not None
    assert backends["megatron"]["available"] is installed


def test_megatron_without_megatron_core_shows_the_extra_to_install(in_empty_dir, capsys, monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name.split(".")[0] == "megatron" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    backends = _training_backends(capsys)
    megatron = backends["megatron"]
    assert megatron["available"] is False
    assert megatron["missing"] == ["megatron.core"]
    assert megatron["install"] == "pip install 'reinforge[megatron]'"
    assert backends["dtensor"]["available"] is True

    assert main(["plugins", "list", "--kind", "training_backend"]) == 0
    table = capsys.readouterr().out
    assert "needs: pip install 'reinforge[megatron]'" in " ".join(table.split())


def test_capabilities_are_reported_and_say_which_backends_train_lora(in_empty_dir, capsys):
    backends = _training_backends(capsys)
    assert backends["dtensor"]["capabilities"] == {
        "data_parallel": True, "tensor_parallel": True, "lora": True, "devices": ["cpu", "cuda"]
    }
    assert backends["megatron"]["capabilities"]["lora"] is False
    assert main(["plugins", "list", "--kind", "training_backend"]) == 0
    table = " ".join(capsys.readouterr().out.split())
    assert "[can: LoRA, data" in table and "[can: data parallel, tensor" in table  # dtensor's and megatron's rows
    assert main(["plugins", "show", "dtensor", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["capabilities"]["lora"] is True
    assert main(["plugins", "show", "megatron"]) == 0
    assert "can: data parallel, tensor parallel; cuda" in capsys.readouterr().out
