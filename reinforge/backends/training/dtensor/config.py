"""Options of the `dtensor` training backend (light: imports only attrs and reinforge.core.config).

`reinforge plugins show dtensor` imports this module without torch, so it must stay light.
"""

from __future__ import annotations

from typing import Literal

import attrs
from attrs import validators as v

from reinforge.core.config import doc

# 256 MiB: big enough that refit sends few messages, small enough to be a modest extra allocation.
DEFAULT_REFIT_BUCKET_BYTES = 256 * 2**20


@attrs.define(kw_only=True, frozen=True)
class DTensorConfig:
    """How the policy is parallelised and computed; what is trained comes from `PolicyConfig`.

    The world size is not an option: it is the size of the torch.distributed group the process
    runs in (1 without one). It is split into `tensor_parallel_size` ranks per model replica
    and `world_size / tensor_parallel_size` data-parallel replicas.
    """

    tensor_parallel_size: int = doc(
        "ranks that split each layer's matmuls (DTensor Colwise/Rowwise); must divide the world size, "
        "the attention heads and the key/value heads",
        default=1,
        validator=v.gt(0),
    )
    fsdp: bool | None = doc(
        "shard parameters, gradients and optimizer state over the data-parallel ranks with FSDP2 "
        "(null = on when there is more than one data-parallel rank, or with cpu_offload on a GPU); "
        "off with several data-parallel ranks means replicated weights and all-reduced gradients",
        default=None,
    )
    activation_checkpointing: bool = doc(
        "recompute each decoder layer's activations in the backward pass (less memory, ~30% more compute)",
        default=False,
    )
    cpu_offload: bool = doc(
        "keep parameters, gradients and optimizer state in CPU memory between uses (FSDP2 CPUOffloadPolicy); "
        "only meaningful on a GPU, a no-op on CPU",
        default=False,
    )
    logprob_chunk_size: int = doc(
        "sequence positions per lm_head chunk when computing logprobs, so the [B, T, V] logits are never "
        "materialised at once (peak memory ~ B x chunk x V floats)",
        default=512,
        validator=v.gt(0),
    )
    microbatching: Literal["fixed", "sorted", "token_budget"] = doc(
        "how train and logprobs split rows into forward passes: fixed = consecutive groups of "
        "policy.train_micro_batch_size / policy.logprob_batch_size rows (today's default); sorted = the same "
        "group sizes over rows sorted longest first, so each group pads to similar lengths; token_budget = "
        "rows sorted longest first, grouped so that rows x longest row <= max_tokens_per_microbatch. "
        "Loss and gradients are the same for every choice (the loss divides by global token counts)",
        default="fixed",
    )
    max_tokens_per_microbatch: int | None = doc(
        "token budget of one forward pass for microbatching=token_budget and for sequence_packing "
        "(null = the batch size in rows x the longest row of the batch, the padded size a fixed microbatch "
        "can reach); must be at least the longest row when packing",
        default=None,
        validator=v.optional(v.gt(0)),
    )
    sequence_packing: bool = doc(
        "lay rows end to end in one sequence per forward pass (first-fit decreasing bins of "
        "max_tokens_per_microbatch tokens, position ids restarting per row, block-diagonal causal attention), "
        "so no compute is spent on padding; overrides microbatching. Needs a model whose attention takes "
        "position_ids and builds its mask with transformers' masking utilities (checked at start-up; verified: "
        "Qwen2, Qwen3, Llama, Mistral, Phi-3 with sdpa and eager, Gemma-2 with eager)",
        default=False,
    )
    lm_head_positions: Literal["all", "response"] = doc(
        "where the output layer and log-softmax run: all = every position (logprobs() returns the whole "
        "row); response = only where the batch's token_mask is 1 (when it has one), other positions read 0. "
        "Saves the head's FLOPs and logits memory on prompt tokens; losses that mask by token_mask get "
        "the same loss and gradients",
        default="all",
    )
    share_prompt_forward: bool | None = doc(
        "run each distinct prompt of a forward pass once and its rows' responses on that prompt's KV cache "
        "(GRPO's G samples, DPO's chosen and rejected share a prompt); rows of one prompt travel in the same "
        "pass, and the output layer runs at response positions only (positions outside token_mask read 0). "
        "Same loss, gradients and response logprobs as the padded path. null (default): train() passes share "
        "prompts, logprobs() passes keep whole rows, and it is off under sequence_packing or "
        "activation_checkpointing or when the start-up probe finds the model's cache does not compose (a "
        "warning says so); true: train() and logprobs(), an error where it cannot run; false: never",
        default=None,
    )
    refit_bucket_bytes: int = doc(
        "default size of the buckets `named_weights` yields when the caller does not give one",
        default=DEFAULT_REFIT_BUCKET_BYTES,
        validator=v.gt(0),
    )
    keep_freed_memory: bool = doc(
        "CPU only: keep memory that tensors free inside the process (glibc: no per-block mmap, no heap trim), so "
        "each step reuses pages instead of page-faulting fresh ones (SmolLM2: 250k-880k faults per step before); "
        "process-wide, and RSS stays at its peak. See reinforge/backends/training/cpu_allocator.py",
        default=True,
    )
    device: Literal["auto", "cpu", "cuda"] = doc(
        "where the model computes (auto: the local rank's GPU when CUDA is available, else cpu)", default="auto"
    )


def check_option_combinations(options: DTensorConfig) -> None:
    """Raise a ReinforgeError for options that cannot work together (each alone is valid)."""
    from reinforge.core.errors import ReinforgeError

    if options.share_prompt_forward is True and options.sequence_packing:
        raise ReinforgeError(
            "policy.backend_cfg: share_prompt_forward and sequence_packing are both on, but a pass is either packed "
            "rows or prompts shared by their rows, not both. Keep share_prompt_forward for GRPO/DPO batches (rows "
            "share prompts), sequence_packing for SFT-like batches (every prompt distinct)."
        )
    if options.share_prompt_forward is True and options.activation_checkpointing:
        raise ReinforgeError(
            "policy.backend_cfg: share_prompt_forward needs each layer's keys and values of the prompt pass in the "
            "response pass, which activation_checkpointing drops (Hugging Face turns the KV cache off under it). "
            "Turn one of them off: activation_checkpointing for long sequences that do not fit, "
            "share_prompt_forward for speed when they do."
        )


def shares_prompts(options: DTensorConfig, *, scoring: bool) -> bool:
    """Whether `train()` (scoring=False) or `logprobs()` (scoring=True) passes share prompts under `options`.

    The answer never depends on a batch's content: under FSDP every rank must make the same decoder
    calls, and a rank's rows may share prompts while another's do not.
    """
    if options.share_prompt_forward is None:
        return not scoring and not options.sequence_packing and not options.activation_checkpointing
    return options.share_prompt_forward
