"""Low-rank adapters (LoRA) on a Hugging Face causal LM, written here rather than taken from PEFT.

Why not PEFT: PEFT replaces each adapted `nn.Linear` by a wrapper that moves the base weight to
`<name>.base_layer.weight`. Everything downstream keys on Hugging Face names: refit (`named_weights`,
which every generator checks by name and shape), the tensor-parallel plan (`ColwiseParallel` /
`RowwiseParallel` on `self_attn.q_proj` ... expect an `nn.Linear` at that path), DCP checkpoints and
`dcp_to_hf`. Undoing the renames at each of those seams costs more than the ~100 lines of an adapter,
and reinforge would gain a dependency whose wrappers' interplay with FSDP2 and DTensor it does not control.

Here an adapted layer stays the same module object at the same path, an `nn.Linear` whose class is
switched to `LoRALinear`: its `weight` and `bias` keep their names (and stay frozen), and it gains two
parameters, `<name>.lora_A  # [r, in]` and `<name>.lora_B  # [out, r]`. Its forward is

    y = x W^T + b + s * dropout(x) A^T B^T        s = alpha / r, B = 0 at the start

so at step 0 the policy is the base model exactly (the adapter adds an exact zero). Turning the
adapters off (`adapters_disabled`) gives the base model again: that is the reference policy for KL
and DPO, with no second copy of the weights. Generators receive `W + s B A` under the base's name.
"""

from __future__ import annotations

import fnmatch
import json
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from reinforge.backends.training.checkpoint_files import META_FILE
from reinforge.core.errors import ReinforgeError
from reinforge.core.lora_config import LoRAConfig

ADAPTER_SUFFIXES = (".lora_A", ".lora_B")


class LoRALinear(nn.Linear):
    """An `nn.Linear` with a low-rank adapter (see the module docstring); made by `add_adapter`, never constructed."""

    lora_A: nn.Parameter  # [r, in]
    lora_B: nn.Parameter  # [out, r]
    scale: float  # alpha / r
    dropout_p: float
    dropout_position: str  # "pre" | "post"
    adapters_enabled: bool

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [..., in] -> [..., out]
        base = F.linear(x, self.weight, self.bias)  # [..., out]
        if not self.adapters_enabled:
            return base
        drop = self.dropout_p > 0 and self.training
        inner = F.dropout(x, self.dropout_p, training=True) if drop and self.dropout_position == "pre" else x
        down = F.linear(inner, self.lora_A)  # [..., r]
        scaled_B = self.lora_B * self.scale  # [out, r]: the scale on the small factor, not on an [..., out] tensor
        if (drop and self.dropout_position == "post") or _is_dtensor(base):
            update = F.linear(down, scaled_B)  # [..., out]
            if drop and self.dropout_position == "post":
                update = F.dropout(update, self.dropout_p, training=True)
            return base + update
        # base + down @ scaled_B^T as one GEMM accumulating into base's copy: no [..., out] temporaries
        # (CPU, SmolLM2's gate_proj shape, forward + backward: 66 ms -> 61 ms; the frozen layer alone 52 ms).
        out = torch.addmm(base.reshape(-1, base.shape[-1]), down.reshape(-1, down.shape[-1]), scaled_B.t())
        return out.view(base.shape)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, lora_rank={self.lora_A.shape[0]}, lora_scale={self.scale}"


def _is_dtensor(tensor: torch.Tensor) -> bool:
    return type(tensor).__name__ == "DTensor"


def add_adapter(linear: nn.Linear, config: LoRAConfig) -> LoRALinear:
    """Turn `linear` (in place, same object) into a `LoRALinear` with fresh A (per `lora_A_init`) and B = 0."""
    weight = linear.weight
    lora_A = torch.empty(config.dim, linear.in_features, dtype=torch.float32)  # [r, in]
    if config.lora_A_init == "xavier":
        nn.init.xavier_normal_(lora_A)
    else:  # "uniform": what nn.Linear does to its own weight
        nn.init.kaiming_uniform_(lora_A, a=math.sqrt(5))
    linear.__class__ = LoRALinear
    linear.lora_A = nn.Parameter(lora_A.to(device=weight.device, dtype=weight.dtype))
    linear.lora_B = nn.Parameter(torch.zeros(linear.out_features, config.dim, dtype=weight.dtype, device=weight.device))
    linear.scale = config.scale
    linear.dropout_p = config.dropout
    linear.dropout_position = config.dropout_position
    linear.adapters_enabled = True
    return linear  # type: ignore[return-value]


# --------------------------------------------------------------------------- which layers
def _matches(pattern: str, name: str) -> bool:
    """A leaf or trailing name (`q_proj`, `self_attn.q_proj`), a full name, or a glob over full names."""
    return name == pattern or name.endswith("." + pattern) or fnmatch.fnmatchcase(name, pattern)


def linear_layer_names(model: nn.Module) -> list[str]:
    """The names of the model's plain `nn.Linear` modules, in module order."""
    return [name for name, module in model.named_modules() if type(module) is nn.Linear]


def describe_linear_layers(names: list[str]) -> str:
    """The layer names with decoder-layer indices folded into `*` (usable as globs), e.g. model.layers.*.mlp.up_proj."""
    folded = dict.fromkeys(re.sub(r"\.\d+(?=\.|$)", ".*", name) for name in names)
    return ", ".join(folded) or "(none)"


def select_targets(model: nn.Module, config: LoRAConfig) -> list[str]:
    """The linear layers `config` adapts; a ReinforgeError when an entry matches nothing or the choice cannot work."""
    names = linear_layer_names(model)
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    output_name = next((n for n in names if model.get_submodule(n) is output), None)
    for key, patterns in (("target_modules", config.target_modules), ("exclude_modules", config.exclude_modules)):
        unmatched = [p for p in patterns if not any(_matches(p, n) for n in names)]
        if unmatched:
            raise ReinforgeError(
                f"policy.lora.{key}: {', '.join(repr(p) for p in unmatched)} matches no linear layer of "
                f"{type(model).__name__}; its linear layers are: {describe_linear_layers(names)}"
            )
    if config.match_all_linear:
        chosen = [n for n in names if n != output_name]
    else:
        chosen = [n for n in names if any(_matches(p, n) for p in config.target_modules)]
    chosen = [n for n in chosen if not any(_matches(p, n) for p in config.exclude_modules)]
    if not chosen:
        raise ReinforgeError(
            "policy.lora: exclude_modules leaves no linear layer to adapt; its linear layers are: "
            + describe_linear_layers(names)
        )
    if output_name in chosen and _output_is_tied(model):
        raise ReinforgeError(
            f"policy.lora.target_modules includes the output layer '{output_name}', whose weight is tied to the input "
            "embeddings: its merged weight could not be sent to generators that tie them. Leave it out "
            f"(exclude_modules: [{output_name}])"
        )
    return chosen


def _output_is_tied(model: nn.Module) -> bool:
    inputs, outputs = model.get_input_embeddings(), model.get_output_embeddings()
    return inputs is not None and outputs is not None and inputs.weight is outputs.weight


def inject_adapters(model: nn.Module, config: LoRAConfig) -> list[str]:
    """Freeze every parameter of `model` and add adapters to the layers `config` selects; return their names."""
    chosen = select_targets(model, config)
    model.requires_grad_(False)
    for name in chosen:
        add_adapter(model.get_submodule(name), config)
    return chosen


# --------------------------------------------------------------------------- using them
def adapter_layers(model: nn.Module) -> Iterator[tuple[str, LoRALinear]]:
    """Every adapted layer, with its name."""
    for name, module in model.named_modules():
        if isinstance(module, LoRALinear):
            yield name, module


@contextmanager
def adapters_disabled(model: nn.Module) -> Iterator[None]:
    """Run `model` as the base model (the reference policy); a plain flag, so every rank takes the same path."""
    layers = [module for _, module in adapter_layers(model)]
    for layer in layers:
        layer.adapters_enabled = False
    try:
        yield
    finally:
        for layer in layers:
            layer.adapters_enabled = True


def is_adapter_name(name: str) -> bool:
    return name.endswith(ADAPTER_SUFFIXES)


def merged_weight(weight: torch.Tensor, lora_A: torch.Tensor, lora_B: torch.Tensor, scale: float) -> torch.Tensor:
    """`W + scale * B A` in W's dtype, computed in float32 (full tensors: `[out, in]`, `[r, in]`, `[out, r]`)."""
    delta = (lora_B.float() @ lora_A.float()) * scale  # [out, in]
    return (weight.float() + delta).to(weight.dtype)


def merge_state_dict(state_dict: dict[str, torch.Tensor], scale: float) -> dict[str, torch.Tensor]:
    """A Hugging Face state dict from one holding `<layer>.lora_A` / `.lora_B` beside `<layer>.weight`: merged, adapters dropped."""
    merged = {name: tensor for name, tensor in state_dict.items() if not is_adapter_name(name)}
    for name in state_dict:
        if name.endswith(".lora_A"):
            layer = name.removesuffix(".lora_A")
            merged[f"{layer}.weight"] = merged_weight(
                state_dict[f"{layer}.weight"], state_dict[name], state_dict[f"{layer}.lora_B"], scale
            )
    return merged


# What fixes the adapters' shapes and meaning; a checkpoint's adapters load only where these agree.
_SHAPE_FIELDS = ("dim", "alpha", "target_modules", "exclude_modules", "match_all_linear")


def check_saved_lora(directory: str | Path, lora: LoRAConfig) -> None:
    """Refuse to load a full checkpoint into a LoRA run, an adapter checkpoint into a full one, or other adapters."""
    meta_file = Path(directory) / META_FILE
    if not meta_file.is_file():
        return  # not a checkpoint at all: load_checkpoint says so
    saved = json.loads(meta_file.read_text(encoding="utf-8")).get("lora")
    if lora.enabled and not saved:
        raise ReinforgeError(
            f"'{directory}' is a full fine-tune checkpoint (every weight), but policy.lora.enabled is true. Resume it "
            "with policy.lora.enabled: false, or train adapters on top of it: reinforge convert it to a Hugging Face "
            "folder and set policy.model_name to that folder"
        )
    if saved and not lora.enabled:
        raise ReinforgeError(
            f"'{directory}' holds LoRA adapters (rank {saved.get('dim')}) and no base weights, but policy.lora.enabled "
            "is false. Resume it with the run's policy.lora settings, or reinforge convert it (merged) and start a "
            "full fine-tune from that folder"
        )
    if saved:
        current = {k: list(v) if isinstance(v, tuple) else v for k, v in attrs.asdict(lora).items()}
        differ = [f"{k}: {saved.get(k)!r} (checkpoint) vs {current[k]!r} (this run)" for k in _SHAPE_FIELDS if saved.get(k) != current[k]]
        if differ:
            raise ReinforgeError(
                f"the LoRA adapters in '{directory}' were trained with other policy.lora settings ({'; '.join(differ)}); "
                "resume with the checkpoint's settings"
            )


def shard_adapters_for_tensor_parallel(layer: nn.Module, mesh: Any, colwise: tuple[str, ...], rowwise: tuple[str, ...]) -> None:
    """Place the adapters of a tensor-parallel decoder layer to match its base weights (after `parallelize_module`).

    Column-parallel W (output rows split): A whole (`Replicate`), B split by rows like W, so B A x comes out split
    like W x. Row-parallel W (input columns split): A split by columns like W, B whole, so B A x is a partial sum
    like W x, reduced by the same all-reduce. `ColwiseParallel` split A by rows and `RowwiseParallel` left both
    plain; both are fixed here. DTensor's `distribute_tensor` takes rank 0's values, so every rank holds one init.
    """
    from torch.distributed.tensor import DTensor, Replicate, Shard, distribute_tensor

    def place(module: LoRALinear, name: str, placement: Any) -> None:
        tensor = getattr(module, name).data
        if isinstance(tensor, DTensor):
            tensor = tensor.full_tensor()
        setattr(module, name, nn.Parameter(distribute_tensor(tensor, mesh, [placement]), requires_grad=True))

    for path in colwise + rowwise:
        module = layer.get_submodule(path)
        if not isinstance(module, LoRALinear):
            continue
        if path in colwise:
            place(module, "lora_A", Replicate())
            place(module, "lora_B", Shard(0))
        else:
            place(module, "lora_A", Shard(1))
            place(module, "lora_B", Replicate())


def peft_adapter_files(
    adapters: dict[str, torch.Tensor], config: LoRAConfig, base_model: str
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """`adapter_config.json` and `adapter_model.safetensors` contents of a PEFT LoRA folder for these adapters.

    `adapters` maps `<layer>.lora_A` / `.lora_B` to full tensors. PEFT's names are
    `base_model.model.<layer>.lora_A.weight`, with the same shapes and the same scale (lora_alpha / r).
    Target modules are listed by full name, so PEFT adapts exactly these layers.
    """
    layers = sorted({name.rsplit(".", 1)[0] for name in adapters})
    tensors = {
        f"base_model.model.{name.rsplit('.', 1)[0]}.{name.rsplit('.', 1)[1]}.weight": tensor.detach().contiguous().cpu()
        for name, tensor in adapters.items()
    }
    adapter_config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": config.dim,
        "lora_alpha": config.alpha,
        "lora_dropout": config.dropout,
        "target_modules": layers,
        "bias": "none",
        "fan_in_fan_out": False,
        "use_rslora": False,
        "use_dora": False,
        "init_lora_weights": True,
        "modules_to_save": None,
        "inference_mode": True,
    }
    return adapter_config, tensors
