"""Build small Qwen2 models with the kit's tokenizer into Hugging Face folders, offline.

Why: no test or demo may download a model, yet they should run the real code paths
(`AutoModelForCausalLM.from_pretrained`, chat templates, generation, tensor parallelism).
`build_model` writes a complete folder in seconds; with `directory=None` it caches the
folder so a warmed-up "small" model is trained once per machine, not once per run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from reinforge.core.errors import ReinforgeError
from reinforge.models.tiny_tokenizer import IM_END, PAD_TOKEN, build_tokenizer
from reinforge.models.warmup import WarmupConfig, warm_up

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, Qwen2Config

# Bump whenever the tokenizer, presets or warm-up change, so cached folders are rebuilt.
KIT_VERSION = "2"
# Model vocabularies are the tokenizer's size rounded up to this (even, so TP can split it).
VOCAB_MULTIPLE = 64
METADATA_FILE = "reinforge_kit.json"


@attrs.define(kw_only=True, frozen=True)
class ModelPreset:
    """The shape of a Qwen2 model; heads and KV heads are even so tensor parallel 2 works."""

    # Width of the residual stream.
    hidden_size: int
    # Number of decoder layers.
    num_hidden_layers: int
    # Query heads; head_dim = hidden_size / num_attention_heads.
    num_attention_heads: int
    # Key/value heads (grouped-query attention).
    num_key_value_heads: int
    # Width of the SwiGLU MLP.
    intermediate_size: int
    # Longest sequence (RoPE, so no parameters depend on it).
    max_position_embeddings: int = 1024
    # Share the input embedding with the output projection (fewer parameters, like Qwen2.5-0.5B).
    tie_word_embeddings: bool = True


PRESETS: dict[str, ModelPreset] = {
    # ~0.4 M parameters: unit tests (a forward pass takes milliseconds).
    "tiny": ModelPreset(
        hidden_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=256
    ),
    # ~11 M parameters: demos and benchmarks; the one the warm-up is tuned for.
    "small": ModelPreset(
        hidden_size=384, num_hidden_layers=6, num_attention_heads=8, num_key_value_heads=4, intermediate_size=1024
    ),
}


def _preset(size: str) -> ModelPreset:
    if size not in PRESETS:
        raise ReinforgeError(f"unknown tiny-model size {size!r}; known sizes: {', '.join(sorted(PRESETS))}.")
    return PRESETS[size]


def model_config(size: str, tokenizer: PreTrainedTokenizerBase) -> Qwen2Config:
    """The Qwen2Config of a preset, with the vocabulary and special ids of `tokenizer`."""
    from transformers import Qwen2Config

    preset = _preset(size)
    vocab_size = -(-len(tokenizer) // VOCAB_MULTIPLE) * VOCAB_MULTIPLE
    return Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=preset.hidden_size,
        intermediate_size=preset.intermediate_size,
        num_hidden_layers=preset.num_hidden_layers,
        num_attention_heads=preset.num_attention_heads,
        num_key_value_heads=preset.num_key_value_heads,
        max_position_embeddings=preset.max_position_embeddings,
        tie_word_embeddings=preset.tie_word_embeddings,
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids(IM_END),
        pad_token_id=tokenizer.convert_tokens_to_ids(PAD_TOKEN),
    )


def cache_root() -> Path:
    """Where cached model folders live: `$REINFORGE_CACHE/models`, default `~/.cache/reinforge/models`."""
    root = os.environ.get("REINFORGE_CACHE") or Path.home() / ".cache" / "reinforge"
    return Path(root).expanduser() / "models"


def _cache_key(size: str, seed: int, warmup_steps: int, warmup: WarmupConfig) -> str:
    settings = {
        "kit": KIT_VERSION,
        "preset": attrs.asdict(_preset(size)),
        "warmup": attrs.asdict(warmup) if warmup_steps else None,
    }
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    return f"{size}-seed{seed}-warmup{warmup_steps}-v{KIT_VERSION}-{digest}"


def build_model(
    directory: str | Path | None = None,
    *,
    size: str = "tiny",
    seed: int = 0,
    warmup_steps: int = 0,
    warmup: WarmupConfig | None = None,
) -> Path:
    """Write a Hugging Face folder (config, safetensors, tokenizer, generation config); return its path.

    `directory=None` uses the cache (see `cache_root`): the folder is keyed by size, seed,
    warm-up steps and settings and the kit version, built in a temporary folder and renamed
    into place, and reused when present. An explicit `directory` must be new or empty.
    `warmup_steps > 0` pre-trains on arithmetic conversations (see `reinforge.models.warmup`).
    """
    _preset(size)
    if warmup_steps < 0:
        raise ReinforgeError(f"warmup_steps must be >= 0, got {warmup_steps}.")
    warmup = warmup or WarmupConfig()
    if directory is not None:
        directory = Path(directory)
        if directory.exists() and any(directory.iterdir()):
            raise ReinforgeError(
                f"{directory} is not empty; build_model writes a fresh model folder. Pass a new or "
                "empty folder, or directory=None to use the cache."
            )
        _write_model(directory, size=size, seed=seed, warmup_steps=warmup_steps, warmup=warmup)
        return directory
    final = cache_root() / _cache_key(size, seed, warmup_steps, warmup)
    if (final / METADATA_FILE).is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        _write_model(staging, size=size, seed=seed, warmup_steps=warmup_steps, warmup=warmup)
        os.rename(staging, final)
    except OSError:
        if not (final / METADATA_FILE).is_file():  # not just a concurrent build that won the race
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _write_model(directory: Path, *, size: str, seed: int, warmup_steps: int, warmup: WarmupConfig) -> None:
    import torch
    from transformers import GenerationConfig, Qwen2ForCausalLM

    started = time.perf_counter()
    tokenizer = build_tokenizer()
    config = model_config(size, tokenizer)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id, max_new_tokens=64
    )
    losses = warm_up(model, tokenizer, steps=warmup_steps, seed=seed, config=warmup) if warmup_steps else []
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    metadata = {
        "kit_version": KIT_VERSION,
        "size": size,
        "seed": seed,
        "parameters": sum(p.numel() for p in model.parameters()),
        "warmup_steps": warmup_steps,
        "warmup": attrs.asdict(warmup) if warmup_steps else None,
        "warmup_first_loss": losses[0] if losses else None,
        "warmup_last_loss": sum(losses[-10:]) / len(losses[-10:]) if losses else None,
        "build_seconds": round(time.perf_counter() - started, 2),
    }
    (directory / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
