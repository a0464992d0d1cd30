"""Hugging Face <-> Megatron-core weights for Qwen2/Qwen2.5 and Llama, in plain torch (no Megatron import).

Why a module of pure tensor functions: the conversion is where silent bugs hide (a swapped
gate/up, a mis-grouped QKV), so it is tested bit-exactly on its own, and the same functions
serve loading, refit (`named_weights`), `export_hf` and checkpoint conversion.

Megatron-core's GPT layout, for a model with `G` key/value groups of `q = heads / G` query heads
of width `d`:
- `self_attention.linear_qkv.weight  # [G * (q + 2) * d, H]`: for each group, its q query heads,
  then its key head, then its value head (so splitting dim 0 into tp pieces keeps groups whole);
  the bias (Qwen2) is laid out the same way.
- `mlp.linear_fc1.weight  # [2 * F, H]`: gate rows then up rows (SwiGLU: silu(gate) * up); a
  tensor-parallel rank holds its slice of gate followed by its slice of up.
- Column-parallel tensors (QKV, fc1, embedding, output layer) split dim 0 over tensor-parallel
  ranks; row-parallel ones (linear_proj, linear_fc2) split dim 1; norms are replicated.
- With Transformer Engine layers the pre-attention and pre-MLP norms are fused into the next
  linear (`linear_qkv.layer_norm_weight`, `linear_fc1.layer_norm_weight`); `local_spec_name`
  maps those names back to the local layer spec's, which the functions here use.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs
import torch

from reinforge.core.errors import ReinforgeError

SUPPORTED_MODEL_TYPES = ("qwen2", "llama")
_LAYER = re.compile(r"^decoder\.layers\.(\d+)\.(.+)$")
_HF_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)$")

# Megatron name suffix (inside a layer) <-> Hugging Face name suffix, for tensors copied as they are.
_PLAIN_LAYER_NAMES = {
    "input_layernorm.weight": "input_layernorm.weight",
    "self_attention.linear_proj.weight": "self_attn.o_proj.weight",
    "pre_mlp_layernorm.weight": "post_attention_layernorm.weight",
    "mlp.linear_fc2.weight": "mlp.down_proj.weight",
}
_TE_NAMES = {
    "input_layernorm.weight": "self_attention.linear_qkv.layer_norm_weight",
    "pre_mlp_layernorm.weight": "mlp.linear_fc1.layer_norm_weight",
}
_COLUMN = ("self_attention.linear_qkv.weight", "self_attention.linear_qkv.bias", "mlp.linear_fc1.weight")
_ROW = ("self_attention.linear_proj.weight", "mlp.linear_fc2.weight")


@attrs.define(kw_only=True, frozen=True)
class ModelSpec:
    """What the conversion and the Megatron model need to know about a Hugging Face architecture."""

    model_type: str  # "qwen2" or "llama"
    num_layers: int
    hidden_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    ffn_hidden_size: int
    vocab_size: int
    tie_word_embeddings: bool
    qkv_bias: bool  # Qwen2: biases on q/k/v only
    norm_eps: float
    rope_theta: float
    rope_scaling_factor: float | None  # Llama 3.1-style frequency scaling; None = plain RoPE
    max_position_embeddings: int

    @property
    def heads_per_group(self) -> int:
        return self.num_attention_heads // self.num_key_value_heads


def _rope(config: Any) -> tuple[float, dict[str, Any] | None]:
    """(theta, scaling dict or None) from a transformers 4 (`rope_theta`, `rope_scaling`) or 5 (`rope_parameters`) config."""
    params = getattr(config, "rope_parameters", None)
    if isinstance(params, Mapping) and "rope_theta" in params:
        kind = params.get("rope_type", "default")
        return float(params["rope_theta"]), None if kind == "default" else dict(params)
    scaling = getattr(config, "rope_scaling", None)
    if isinstance(scaling, Mapping) and scaling.get("rope_type", scaling.get("type", "default")) == "default":
        scaling = None
    return float(getattr(config, "rope_theta", 10000.0)), dict(scaling) if scaling else None


def spec_from_hf_config(config: Any) -> ModelSpec:
    """Read a transformers `Qwen2Config` / `LlamaConfig`; a ReinforgeError names what is not supported."""
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ReinforgeError(
            f"the megatron training backend converts {', '.join(SUPPORTED_MODEL_TYPES)} models, not '{model_type}'; "
            "use policy.backend=dtensor for other architectures"
        )
    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    if model_type == "llama" and (getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False)):
        raise ReinforgeError(
            "this Llama config has attention_bias or mlp_bias set; the megatron backend converts Llama without "
            "linear biases only (as Meta's checkpoints are); use policy.backend=dtensor"
        )
    if getattr(config, "hidden_act", "silu") != "silu":
        raise ReinforgeError(f"hidden_act '{config.hidden_act}' is not supported by the megatron backend (only silu)")
    theta, scaling = _rope(config)
    factor = None
    if scaling is not None:
        kind = scaling.get("rope_type", scaling.get("type"))
        # Megatron-core's `rope_scaling` is Llama 3.1's rule with its fixed constants; anything else would silently differ.
        llama3 = (kind == "llama3" and float(scaling.get("low_freq_factor", 1.0)) == 1.0
                  and float(scaling.get("high_freq_factor", 4.0)) == 4.0
                  and int(scaling.get("original_max_position_embeddings", 8192)) == 8192)
        if not llama3:
            raise ReinforgeError(
                f"RoPE scaling {scaling} is not supported by the megatron backend (only Llama 3.1's llama3 rule with "
                "low_freq_factor 1, high_freq_factor 4, original_max_position_embeddings 8192); use policy.backend=dtensor"
            )
        factor = float(scaling["factor"])
    return ModelSpec(
        model_type=model_type,
        num_layers=int(config.num_hidden_layers),
        hidden_size=int(config.hidden_size),
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        ffn_hidden_size=int(config.intermediate_size),
        vocab_size=int(config.vocab_size),
        tie_word_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
        qkv_bias=model_type == "qwen2",
        norm_eps=float(config.rms_norm_eps),
        rope_theta=theta,
        rope_scaling_factor=factor,
        max_position_embeddings=int(config.max_position_embeddings),
    )


# --------------------------------------------------------------------------- whole models (no parallelism)
def fuse_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec: ModelSpec) -> torch.Tensor:
    """HF q [nq*d, ...], k and v [G*d, ...] -> Megatron's grouped [G*(q+2)*d, ...] (weights or biases)."""
    groups, d = spec.num_key_value_heads, spec.head_dim
    rest = q.shape[1:]
    q = q.reshape(groups, spec.heads_per_group * d, *rest)
    k = k.reshape(groups, d, *rest)
    v = v.reshape(groups, d, *rest)
    return torch.cat([q, k, v], dim=1).reshape(-1, *rest)


def split_qkv(qkv: torch.Tensor, spec: ModelSpec) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inverse of `fuse_qkv`."""
    groups, d, per = spec.num_key_value_heads, spec.head_dim, spec.heads_per_group
    rest = qkv.shape[1:]
    grouped = qkv.reshape(groups, (per + 2) * d, *rest)
    q, k, v = torch.split(grouped, [per * d, d, d], dim=1)
    return q.reshape(-1, *rest), k.reshape(-1, *rest), v.reshape(-1, *rest)


def hf_to_megatron(hf: Mapping[str, torch.Tensor], spec: ModelSpec) -> dict[str, torch.Tensor]:
    """A Hugging Face state dict -> Megatron-core GPT names (local layer spec, whole model).

    Tensors are copied only where fused (QKV, fc1); the others are the same tensor objects.
    """
    out: dict[str, torch.Tensor] = {"embedding.word_embeddings.weight": hf["model.embed_tokens.weight"]}
    for i in range(spec.num_layers):
        src, dst = f"model.layers.{i}.", f"decoder.layers.{i}."
        for mc, name in _PLAIN_LAYER_NAMES.items():
            out[dst + mc] = hf[src + name]
        attn = src + "self_attn."
        out[dst + "self_attention.linear_qkv.weight"] = fuse_qkv(
            hf[attn + "q_proj.weight"], hf[attn + "k_proj.weight"], hf[attn + "v_proj.weight"], spec
        )
        if spec.qkv_bias:
            out[dst + "self_attention.linear_qkv.bias"] = fuse_qkv(
                hf[attn + "q_proj.bias"], hf[attn + "k_proj.bias"], hf[attn + "v_proj.bias"], spec
            )
        out[dst + "mlp.linear_fc1.weight"] = torch.cat([hf[src + "mlp.gate_proj.weight"], hf[src + "mlp.up_proj.weight"]])
    out["decoder.final_layernorm.weight"] = hf["model.norm.weight"]
    if not spec.tie_word_embeddings:
        out["output_layer.weight"] = hf["lm_head.weight"]
    return out


def megatron_to_hf(mc: Mapping[str, torch.Tensor], spec: ModelSpec) -> dict[str, torch.Tensor]:
    """Inverse of `hf_to_megatron` (tied models get no `lm_head.weight`: Hugging Face re-ties it)."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in mc.items():
        out.update(megatron_tensor_to_hf(name, tensor, spec))
    return out


def megatron_tensor_to_hf(name: str, tensor: torch.Tensor, spec: ModelSpec) -> list[tuple[str, torch.Tensor]]:
    """One full (unsharded) Megatron tensor under its global name -> its Hugging Face tensor(s)."""
    if name == "embedding.word_embeddings.weight":
        return [("model.embed_tokens.weight", tensor)]
    if name == "decoder.final_layernorm.weight":
        return [("model.norm.weight", tensor)]
    if name == "output_layer.weight":
        return [] if spec.tie_word_embeddings else [("lm_head.weight", tensor)]
    match = _LAYER.match(name)
    if match is None:
        raise KeyError(f"no Hugging Face name for the Megatron tensor {name}")
    index, inner = match.groups()
    prefix = f"model.layers.{index}."
    if inner in _PLAIN_LAYER_NAMES:
        return [(prefix + _PLAIN_LAYER_NAMES[inner], tensor)]
    if inner in ("self_attention.linear_qkv.weight", "self_attention.linear_qkv.bias"):
        kind = inner.rsplit(".", 1)[1]
        q, k, v = split_qkv(tensor, spec)
        return [(f"{prefix}self_attn.{p}_proj.{kind}", t) for p, t in zip("qkv", (q, k, v))]
    if inner == "mlp.linear_fc1.weight":
        gate, up = tensor.chunk(2, dim=0)
        return [(prefix + "mlp.gate_proj.weight", gate), (prefix + "mlp.up_proj.weight", up)]
    raise KeyError(f"no Hugging Face name for the Megatron tensor {name}")


# --------------------------------------------------------------------------- tensor and pipeline parallelism
def _inner(name: str) -> str:
    match = _LAYER.match(name)
    return match.group(2) if match else name


def split_dim(name: str) -> int | None:
    """The dimension a (global, local-spec) tensor is split on over tensor-parallel ranks; None = replicated."""
    inner = _inner(name)
    if inner in _COLUMN or name in ("embedding.word_embeddings.weight", "output_layer.weight"):
        return 0
    if inner in _ROW:
        return 1
    return None


def tp_shard(name: str, full: torch.Tensor, rank: int, size: int) -> torch.Tensor:
    """Tensor-parallel rank `rank`'s piece of a full Megatron tensor."""
    dim = split_dim(name)
    if dim is None or size == 1:
        return full
    if _inner(name) == "mlp.linear_fc1.weight":  # each rank: its gate rows, then its up rows
        gate, up = full.chunk(2, dim=0)
        return torch.cat([gate.chunk(size, dim=0)[rank], up.chunk(size, dim=0)[rank]])
    return full.chunk(size, dim=dim)[rank]


def tp_unshard(name: str, pieces: list[torch.Tensor]) -> torch.Tensor:
    """Inverse of `tp_shard`: the full tensor from every tensor-parallel rank's piece, in rank order."""
    dim = split_dim(name)
    if dim is None or len(pieces) == 1:
        return pieces[0]
    if _inner(name) == "mlp.linear_fc1.weight":
        halves = [p.chunk(2, dim=0) for p in pieces]
        return torch.cat([torch.cat([h[0] for h in halves]), torch.cat([h[1] for h in halves])])
    return torch.cat(pieces, dim=dim)


def local_spec_name(name: str) -> str:
    """A Transformer Engine spec name (fused norms) -> the local layer spec's name; others unchanged."""
    match = _LAYER.match(name)
    if match:
        for local, fused in _TE_NAMES.items():
            if match.group(2) == fused:
                return f"decoder.layers.{match.group(1)}.{local}"
    return name
