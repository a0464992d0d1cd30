"""The `dtensor` training backend: a Hugging Face causal LM on PyTorch-native parallelism.

FSDP2 (`fully_shard`) shards over data-parallel ranks and DTensor `parallelize_module` splits
layers over tensor-parallel ranks, so the same code runs in one CPU process (no process group)
and under torchrun or a Ray worker group. Importing this package is light (the registry reads
`config`); `backend` imports torch and transformers when the registry resolves "dtensor".

Modules: `config` (options), `backend` (`DTensorBackend`), `distributed` (world, meshes,
reductions), `parallelize` (TP plan, FSDP2, activation checkpointing), `logprobs` (chunked
per-token logprobs), `training` (one optimizer step), `optim` (optimizer, LR schedule, grad norm),
`checkpointing` (DCP save/load, Hugging Face export, `dcp_to_hf`).
"""

from __future__ import annotations

from reinforge.backends.training.dtensor.config import DTensorConfig

__all__ = ["DTensorConfig"]
