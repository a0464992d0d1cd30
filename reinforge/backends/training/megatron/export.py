"""Hugging Face folders from the live model (`export_hf`) or from a saved Megatron checkpoint (`reinforge convert`)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

# Writing a Hugging Face folder from a state dict is the same for every backend.
from reinforge.backends.training.dtensor.checkpointing import write_hf_folder
from reinforge.backends.training.megatron.convert import megatron_tensor_to_hf, spec_from_hf_config
from reinforge.core.errors import ReinforgeError


def write_hf(state: dict[str, torch.Tensor], hf_config: Any, directory: str | Path, *, model_name: str, tokenizer_dir: str | None) -> Path:
    """Save Hugging Face-named tensors with the base model's config, generation config and tokenizer."""
    from transformers import GenerationConfig

    try:
        generation_config = GenerationConfig.from_pretrained(model_name)
    except OSError:
        generation_config = None
    return write_hf_folder(state, hf_config, directory, generation_config=generation_config, tokenizer_dir=tokenizer_dir)
