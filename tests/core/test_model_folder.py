"""`safetensors_problem` and `check_model_folder` on hand-made files: each damage named, a sound file passes."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from reinforge.core.errors import ReinforgeError
from reinforge.core.model_folder import check_model_folder, looks_like_checkpoint, safetensors_problem


def _safetensors(path: Path) -> bytes:
    save_file({"a": torch.zeros(3, 2), "b": torch.ones(5)}, str(path))  # 24 + 20 = 44 bytes of data
    return path.read_bytes()


def _raw(header: dict, data: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def test_a_sound_file_has_no_problem(tmp_path):
    data = _safetensors(tmp_path / "w.safetensors")
    assert safetensors_problem(tmp_path / "w.safetensors") is None
    (header_len,) = struct.unpack("<Q", data[:8])
    assert len(data) - 8 - header_len == 44  # what the truncation arithmetic below relies on


def test_each_kind_of_damage_is_named(tmp_path):
    path = tmp_path / "w.safetensors"
    data = _safetensors(path)
    cases = {
        b"": "the file is empty",
        data[:5]: "the file has 5 bytes, fewer than the 8-byte header length",
        data[:-4]: "it is truncated: its header describes 44 bytes of tensor data but the file holds 40",
        data + b"\0" * 7: "it holds 7 bytes more than its header describes",
        struct.pack("<Q", 2**40) + data[8:]: "its header claims 1,099,511,627,776 bytes",
        _raw({"a": {"dtype": "F32", "shape": [1]}}, b"\0" * 4): "its header is not valid safetensors JSON",
        data[:8] + b"\xff" * (len(data) - 8): "its header is not valid safetensors JSON",
        _raw({"__metadata__": {"format": "pt"}, "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8): None,
    }
    for content, expected in cases.items():
        path.write_bytes(content)
        problem = safetensors_problem(path)
        assert (problem is None) if expected is None else (expected in problem), (content[:20], problem)


def test_checkpoint_layouts_are_recognised(tmp_path):
    step = tmp_path / "step_3"
    (step / "policy" / "dcp").mkdir(parents=True)
    (step / "policy" / "dcp" / ".metadata").write_bytes(b"")
    (step / "training_info.json").write_text("{}")
    assert looks_like_checkpoint(step) and looks_like_checkpoint(step / "policy")
    assert not looks_like_checkpoint(tmp_path)
    with pytest.raises(ReinforgeError, match=r"is a reinforge training checkpoint.*--dcp-ckpt-path .*step_3/policy --hf-ckpt-path .*step_3/hf"):
        check_model_folder(str(step / "policy"), setting="policy.model_name")


def test_a_hub_name_passes_and_a_complete_folder_passes(tmp_path):
    check_model_folder("Qwen/Qwen2.5-1.5B", setting="policy.model_name")  # not a local path: left to transformers
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "tokenizer.json").write_text("{}")
    _safetensors(tmp_path / "model.safetensors")
    check_model_folder(str(tmp_path), setting="policy.model_name")
