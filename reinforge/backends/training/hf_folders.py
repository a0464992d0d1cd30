"""Reading a Hugging Face model's config and writing Hugging Face folders (shared by every training backend)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from reinforge.core.errors import ReinforgeError


def read_model_config(name: str) -> Any:
    """The model's `transformers` config, or a ReinforgeError naming `policy.model_name`."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as exc:
        raise ReinforgeError(
            f"cannot read the model config of '{name}' ({exc.__class__.__name__}: {str(exc).splitlines()[0]}); "
            "check policy.model_name (a Hugging Face folder or hub name)"
        ) from None


def read_generation_config(name: str | Path) -> Any:
    """The model's generation config (sampling defaults, EOS ids), or None when the folder has none."""
    from transformers import GenerationConfig

    try:
        return GenerationConfig.from_pretrained(name)
    except OSError:
        return None


def write_hf_folder(
    state_dict: dict[str, torch.Tensor],
    config: Any,
    out_dir: str | Path,
    *,
    generation_config: Any = None,
    tokenizer_dir: str | Path | None = None,
) -> Path:
    """Save `state_dict` as a Hugging Face folder (safetensors, config, generation config, tokenizer).

    The model is built on the meta device and takes the given tensors as its parameters
    (`assign=True`), so no second copy of the weights is allocated; tied weights are re-tied
    and saved once, as `save_pretrained` always does.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = Path(out_dir)
    dtype = next(iter(state_dict.values())).dtype
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.load_state_dict(state_dict, assign=True)
    model.tie_weights()
    if generation_config is not None:
        model.generation_config = generation_config
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    if tokenizer_dir is not None:
        try:
            AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(out)
        except (OSError, ValueError) as exc:
            warnings.warn(f"no tokenizer copied into {out}: cannot load one from {tokenizer_dir} ({exc})", stacklevel=2)
    return out
