"""Turn a loaded Hugging Face causal LM into this rank's part of the parallel model.

Order matters and follows the PyTorch recipe: tensor parallel first (`parallelize_module` turns
the layer projections into DTensors on the "tp" mesh), then activation checkpointing, then FSDP2
(`fully_shard` every decoder layer, then the root) on the "dp" mesh, so FSDP shards the
already tensor-parallel parameters (2-D) and all-gathers one layer at a time.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from reinforge.backends.training.dtensor.config import DTensorConfig
from reinforge.backends.training.dtensor.distributed import ParallelContext
from reinforge.backends.training.dtensor.lora import shard_adapters_for_tensor_parallel
from reinforge.core.errors import ReinforgeError

# Megatron-style split of a Llama/Qwen2 decoder layer: the first matmul of each block is split by
# output features (each rank owns whole heads / a slice of the MLP), the second by input
# features, whose partial sums one all-reduce combines. Activations between blocks stay whole.
_COLWISE = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.gate_proj", "mlp.up_proj")
_ROWWISE = ("self_attn.o_proj", "mlp.down_proj")


def check_tensor_parallel(config: Any, tp: int) -> None:
    """Raise a ReinforgeError unless `tp` splits the model's heads, key/value heads and MLP evenly."""
    if tp == 1:
        return
    sizes = {
        "num_attention_heads": getattr(config, "num_attention_heads", None),
        "num_key_value_heads": getattr(config, "num_key_value_heads", None) or getattr(config, "num_attention_heads", None),
        "intermediate_size": getattr(config, "intermediate_size", None),
    }
    bad = [f"{name}={value}" for name, value in sizes.items() if value is None or value % tp]
    if bad:
        raise ReinforgeError(
            f"backend_cfg.tensor_parallel_size={tp} does not divide the model's {', '.join(bad)} "
            f"({getattr(config, 'model_type', '?')} model); choose a tensor_parallel_size that divides "
            f"the attention heads ({sizes['num_attention_heads']}) and key/value heads ({sizes['num_key_value_heads']})"
        )


def decoder_layers(causal_lm: nn.Module) -> list[nn.Module]:
    """The transformer blocks of a Llama/Qwen2-style model (`model.layers`)."""
    layers = getattr(getattr(causal_lm, "model", None), "layers", None)
    if layers is None:
        raise ReinforgeError(
            f"the dtensor backend expects a Llama/Qwen2-style causal LM with `model.layers`; "
            f"{type(causal_lm).__name__} has none"
        )
    return list(layers)


def apply_tensor_parallel(causal_lm: nn.Module, ctx: ParallelContext) -> None:
    """Split every decoder layer's projections over the "tp" mesh (embeddings and lm_head stay replicated)."""
    if ctx.tp_size == 1:
        return
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    plan: dict[str, Any] = {name: ColwiseParallel() for name in _COLWISE}
    plan.update({name: RowwiseParallel() for name in _ROWWISE})
    for layer in decoder_layers(causal_lm):
        missing = [name for name in plan if not _has_submodule(layer, name)]
        if missing:
            raise ReinforgeError(
                f"tensor parallel needs the Llama/Qwen2 layer layout; {type(layer).__name__} lacks {', '.join(missing)}"
            )
        parallelize_module(layer, ctx.tp_mesh, plan)
        shard_adapters_for_tensor_parallel(layer, ctx.tp_mesh, _COLWISE, _ROWWISE)  # LoRA: no-op without adapters


def _has_submodule(module: nn.Module, name: str) -> bool:
    try:
        module.get_submodule(name)
    except AttributeError:
        return False
    return True


def enable_activation_checkpointing(causal_lm: nn.Module) -> None:
    """Recompute each decoder layer in backward (HF's per-layer checkpointing, non-reentrant so FSDP2 hooks rerun)."""
    if not getattr(causal_lm, "supports_gradient_checkpointing", False):
        raise ReinforgeError(f"{type(causal_lm).__name__} does not support activation checkpointing")
    kwargs = {"use_reentrant": False}
    enable = getattr(causal_lm, "activation_checkpointing_enable", None)  # transformers >= 5.x name
    if enable is not None:
        enable(activation_checkpointing_kwargs=kwargs)
    else:
        causal_lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def apply_fsdp(root: nn.Module, causal_lm: nn.Module, ctx: ParallelContext, options: DTensorConfig) -> None:
    """Shard each decoder layer, then the root (embeddings, final norm, lm_head) over the "dp" mesh.

    FSDP2 averages gradients over the data-parallel ranks; the training step multiplies the loss by
    the data-parallel size so the result is the gradient of the globally normalised loss.
    """
    if not ctx.fsdp:
        return
    from torch.distributed.fsdp import CPUOffloadPolicy, OffloadPolicy, fully_shard

    offload = CPUOffloadPolicy() if options.cpu_offload and ctx.device.type == "cuda" else OffloadPolicy()
    for layer in decoder_layers(causal_lm):
        fully_shard(layer, mesh=ctx.dp_mesh, offload_policy=offload)
    fully_shard(root, mesh=ctx.dp_mesh, offload_policy=offload)


def place(module: nn.Module, ctx: ParallelContext, options: DTensorConfig) -> None:
    """Move the unsharded model to its compute device (FSDP2's CPU offload keeps it on the CPU instead)."""
    if ctx.device.type != "cpu" and not (options.cpu_offload and ctx.fsdp):
        module.to(ctx.device)


def parallelize(root: nn.Module, causal_lm: nn.Module, ctx: ParallelContext, options: DTensorConfig, *, train: bool) -> None:
    """Apply the whole recipe to `root` (the wrapper whose forward computes logprobs) around `causal_lm`."""
    check_tensor_parallel(causal_lm.config, ctx.tp_size)
    place(root, ctx, options)
    apply_tensor_parallel(causal_lm, ctx)
    if train and options.activation_checkpointing:
        enable_activation_checkpointing(causal_lm)
    apply_fsdp(root, causal_lm, ctx, options)


def reshard(module: nn.Module) -> None:
    """Free the all-gathered parameters FSDP2 keeps after a no-grad forward (the root is not resharded
    after forward, as backward usually follows), so every parameter is a shard again."""
    from torch.distributed.fsdp import FSDPModule

    if isinstance(module, FSDPModule):
        module.reshard()


def is_dtensor(tensor: torch.Tensor) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)
