"""Loaded weights live in memory the process owns, not in the checkpoint file's memory mapping.

transformers memory-maps a safetensors file whose dtype is the one asked for, so its tensors are
private mappings of the file: each page's first write takes a copy-on-write fault (the `hf`
generator's first refit of SmolLM2 took 1.5-1.7 s instead of 0.05 s), and a file rewritten in place
under a running job changes the weights not yet written. `own_weights` copies them out at load.
These tests read /proc/self/maps, so they need Linux.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch

from reinforge.backends.kit import own_weights

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps (Linux only)")


def mapped_file(tensor: torch.Tensor) -> str | None:
    """The file whose mapping holds `tensor`'s first byte, or None for anonymous memory."""
    address = tensor.data_ptr()
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        start, end = (int(x, 16) for x in fields[0].split("-"))
        if start <= address < end:
            return fields[5].strip() if len(fields) == 6 and fields[5].startswith("/") else None
    return None


def file_backed(module: torch.nn.Module) -> list[str]:
    return [name for name, p in module.named_parameters() if (mapped_file(p) or "").endswith(".safetensors")]


def load(folder: Path) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)


@pytest.fixture
def model_copy(tiny_model_dir: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    return folder


def overwrite_in_place(folder: Path) -> None:
    """Zero every weight byte of the checkpoint in place (same inode, header kept), as `open(.., "r+b")` would."""
    path = folder / "model.safetensors"
    header = 8 + int.from_bytes(path.read_bytes()[:8], "little")
    size = path.stat().st_size
    with path.open("r+b") as out:
        out.seek(header)
        out.write(b"\0" * (size - header))


def test_a_plain_load_is_file_backed_and_sees_the_file_change(model_copy):
    """The premise: without own_weights the parameters are the file's pages, so rewriting the file moves them."""
    model = load(model_copy)
    if not file_backed(model):
        pytest.skip("this transformers version copies safetensors at load; nothing to own")
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    overwrite_in_place(model_copy)
    changed = [name for name, p in model.named_parameters() if not torch.equal(p, before[name])]
    assert changed, "the file was zeroed in place, yet no mapped parameter changed"


def test_own_weights_copies_out_keeps_identity_values_and_ties(model_copy):
    model = load(model_copy)
    params = dict(model.named_parameters(remove_duplicate=False))
    before = {name: p.detach().clone() for name, p in params.items()}
    own_weights(model)
    assert file_backed(model) == []
    after = dict(model.named_parameters(remove_duplicate=False))
    assert all(after[name] is params[name] for name in params)  # same Parameter objects: optimizers still hold them
    assert all(torch.equal(after[name], before[name]) for name in params)
    if model.config.tie_word_embeddings:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    overwrite_in_place(model_copy)  # an in-place rewrite no longer reaches the loaded model
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters(remove_duplicate=False))


def test_hf_generator_and_dtensor_trainer_own_their_weights(model_copy):
    from reinforge.backends.generation.hf.backend import HFGenerationBackend
    from reinforge.backends.training.dtensor.backend import DTensorBackend
    from reinforge.backends.training.dtensor.config import DTensorConfig
    from reinforge.core.run_config import PolicyConfig

    policy = PolicyConfig(model_name=str(model_copy), train_global_batch_size=2, train_micro_batch_size=2)
    generator = HFGenerationBackend(policy)
    assert file_backed(generator.model) == []
    trainer = DTensorBackend(policy, DTensorConfig())
    try:
        weights = dict(p for bucket in trainer.named_weights(2**30) for p in bucket)
        assert weights and not [name for name, t in weights.items() if (mapped_file(t) or "").endswith(".safetensors")]
    finally:
        trainer.shutdown()
