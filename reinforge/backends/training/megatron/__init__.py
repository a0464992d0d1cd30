"""The `megatron` training backend: a Megatron-core GPTModel converted from a Hugging Face checkpoint.

Importing this package is light (the registry reads `config`); `backend` imports torch and
Megatron-core when the registry resolves "megatron" (extra `reinforge[megatron]`).

Modules: `config` (options), `backend` (`MegatronBackend`), `runtime` (Megatron's parallel
grid, reductions), `convert` (Hugging Face <-> Megatron weights, pure torch), `model` (build the
GPTModel, load and gather weights), `logprobs` (vocabulary-parallel chunked logprobs),
`training` (one step through Megatron's forward-backward schedule), `checkpointing`
(Megatron distributed checkpoints), `export` (Hugging Face folders).
"""

from __future__ import annotations

from reinforge.backends.training.megatron.config import MegatronConfig

__all__ = ["MegatronConfig"]
