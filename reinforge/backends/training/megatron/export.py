"""Hugging Face folders from the live model (`export_hf`) or from a saved Megatron checkpoint (`reinforge convert`)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from reinforge.backends.training.hf_folders import read_generation_config, write_hf_folder
from reinforge.backends.training.megatron.convert import megatron_tensor_to_hf, spec_from_hf_config
from reinforge.core.errors import ReinforgeError


def write_hf(state: dict[str, torch.Tensor], hf_config: Any, directory: str | Path, *, model_name: str, tokenizer_dir: str | None) -> Path:
    """Save Hugging Face-named tensors with the base model's config, generation config and tokenizer."""
    return write_hf_folder(
        state, hf_config, directory, generation_config=read_generation_config(model_name), tokenizer_dir=tokenizer_dir
    )


def checkpoint_to_hf(
    checkpoint_dir: str | Path,
    base_model_dir: str | Path,
    out_dir: str | Path,
    *,
    tokenizer_dir: str | Path | None = None,
) -> Path:
    """Convert a saved megatron checkpoint's weights to a Hugging Face folder, offline, in one process.

    `checkpoint_dir` is the folder `save` wrote (or its `mcore/` subfolder). Megatron's
    `torch_dist` format is torch.distributed.checkpoint underneath, with global (unsharded) tensors
    and the decoder layers stacked on a leading axis, so the model tensors are read directly —
    no process group and no Megatron model are needed. `base_model_dir` supplies the config,
    and (unless `tokenizer_dir` is given) the tokenizer and generation config.
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    from reinforge.backends.training.safe_dcp import SafeFileSystemReader, SafeLoadPlanner
    from transformers import AutoConfig

    from reinforge.backends.training.megatron.checkpointing import MCORE_DIR
    from reinforge.backends.training.megatron.convert import local_spec_name

    source = Path(checkpoint_dir)
    if (source / MCORE_DIR / ".metadata").is_file():
        source = source / MCORE_DIR
    if not (source / ".metadata").is_file():
        raise ReinforgeError(f"no megatron checkpoint in '{checkpoint_dir}' (no {MCORE_DIR}/.metadata); pass a step_N/policy folder")
    try:
        config = AutoConfig.from_pretrained(base_model_dir)
    except (OSError, ValueError) as exc:
        raise ReinforgeError(f"cannot read the model config from '{base_model_dir}' ({exc}); pass the base model folder") from None
    spec = spec_from_hf_config(config)
    metadata = SafeFileSystemReader(str(source)).read_metadata()  # no pickled code: see safe_dcp
    stored = {
        key: torch.empty(tuple(entry.size), dtype=entry.properties.dtype)
        for key, entry in metadata.state_dict_metadata.items()
        if key.startswith(("embedding.", "decoder.", "output_layer.")) and isinstance(entry, TensorStorageMetadata)
    }
    if not stored:
        raise ReinforgeError(f"the checkpoint in '{source}' holds no model weights")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*single process.*", category=UserWarning)
        dcp.load(stored, storage_reader=SafeFileSystemReader(source), planner=SafeLoadPlanner(), no_dist=True)
    state: dict[str, torch.Tensor] = {}
    for key, tensor in stored.items():
        if key.startswith("decoder.layers."):  # [L, ...]: one slice per layer
            inner = key.removeprefix("decoder.layers.")
            for index in range(tensor.shape[0]):
                state.update(megatron_tensor_to_hf(local_spec_name(f"decoder.layers.{index}.{inner}"), tensor[index], spec))
        else:
            state.update(megatron_tensor_to_hf(key, tensor, spec))
    if spec.tie_word_embeddings:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    return write_hf(state, config, out_dir, model_name=str(base_model_dir), tokenizer_dir=str(tokenizer_dir or base_model_dir))
