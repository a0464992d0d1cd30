"""Options of the `megatron` training backend (light: imports only attrs and reinforge.core.config).

`reinforge plugins show megatron` imports this module without torch or Megatron-core, so it
must stay light.
"""

from __future__ import annotations

from typing import Literal

import attrs
from attrs import validators as v

from reinforge.core.config import doc

# 256 MiB: big enough that refit sends few messages, small enough to be a modest extra allocation.
DEFAULT_REFIT_BUCKET_BYTES = 256 * 2**20


@attrs.define(kw_only=True, frozen=True)
class MegatronConfig:
    """How Megatron-core parallelises and computes the policy; what is trained comes from `PolicyConfig`.

    The world size is the size of the torch.distributed group the process runs in (1 without
    one). It is split into model-parallel groups of `tensor_parallel_size x
    pipeline_parallel_size` ranks and `world / (tp x pp)` data-parallel replicas. Ranks are laid
    out as rank = dp_rank * (tp x pp) + pp_rank * tp + tp_rank, so that the ranks of one replica
    are adjacent (the layout the Ray executor shards batches by).
    """

    tensor_parallel_size: int = doc(
        "ranks that split each layer's matmuls (Megatron column/row-parallel linears); must divide the "
        "attention heads, the key/value heads and the vocabulary",
        default=1,
        validator=v.gt(0),
    )
    pipeline_parallel_size: int = doc(
        "pipeline stages (consecutive, equal blocks of decoder layers on different ranks; must divide the "
        "number of layers), run by Megatron's 1F1B schedule; the loss and logprobs are computed on the last "
        "stage and broadcast to the others",
        default=1,
        validator=v.gt(0),
    )
    context_parallel_size: int = doc(
        "ranks that split each sequence (ring attention); only 1: Megatron-core runs context parallelism "
        "only in Transformer Engine's attention, and this backend does not yet split the logprob "
        "computation over the sequence shards",
        default=1,
        validator=v.gt(0),
    )
    sequence_parallel: bool = doc(
        "shard the activations outside the matmuls over the tensor-parallel ranks (needs "
        "tensor_parallel_size > 1 and Transformer Engine, i.e. a GPU)",
        default=False,
    )
    use_distributed_optimizer: bool = doc(
        "shard the optimizer state (and fp32 master weights) over the data-parallel ranks (ZeRO-1)",
        default=False,
    )
    activation_recomputation: Literal["none", "selective", "full"] = doc(
        "recompute activations in the backward pass: none; selective (the attention core, cheap and "
        "memory-hungry); full (every decoder layer)",
        default="none",
    )
    transformer_impl: Literal["auto", "local", "transformer_engine"] = doc(
        "layer implementation: local (plain PyTorch modules, runs anywhere); transformer_engine (fused "
        "kernels, GPU only); auto = transformer_engine when it is installed and a GPU is present",
        default="auto",
    )
    logprob_chunk_size: int = doc(
        "sequence positions per output-layer chunk when computing logprobs, so the [B, T, V/tp] logits "
        "are never materialised at once (ignored with sequence_parallel, whose output layer gathers "
        "the sequence itself)",
        default=512,
        validator=v.gt(0),
    )
    refit_bucket_bytes: int = doc(
        "default size of the buckets `named_weights` yields when the caller does not give one",
        default=DEFAULT_REFIT_BUCKET_BYTES,
        validator=v.gt(0),
    )
    device: Literal["auto", "cpu", "cuda"] = doc(
        "where the model computes (auto: the local rank's GPU when CUDA is available, else cpu; "
        "Megatron-core itself assumes CUDA, so cpu is for tests that shim it)",
        default="auto",
    )

    def __attrs_post_init__(self) -> None:
        if self.sequence_parallel and self.tensor_parallel_size == 1:
            raise ValueError("sequence_parallel needs tensor_parallel_size > 1")
        if self.context_parallel_size > 1:
            raise ValueError(
                f"context_parallel_size={self.context_parallel_size} is not supported by the megatron backend: "
                "Megatron-core splits attention over the sequence only in Transformer Engine's attention (its "
                "local attention asserts context_parallel_size == 1), and this backend does not split its "
                "logprob and loss computation over sequence shards; use context_parallel_size: 1 and "
                "tensor/pipeline/data parallelism"
            )

    @property
    def model_parallel_size(self) -> int:
        """Ranks per data-parallel replica (they all receive the same rows)."""
        return self.tensor_parallel_size * self.pipeline_parallel_size * self.context_parallel_size
