"""`LoRAConfig`: low-rank adapters on the policy's linear layers (YAML `policy.lora`).

Why in core, beside `ModelConfig`: the trainer trains the adapters, and a generator may need to
know about them (adapter-aware refit), so the setting lives in the model's description that both
read, not in one backend's options. Field names and defaults are NeMo-RL's
(`policy.dtensor_cfg.lora_cfg`), so `policy.lora.enabled=true` alone adapts every linear layer.

The adapted layer computes `W x + (alpha / dim) * B A dropout(x)` with `A  # [dim, in]` drawn by
`lora_A_init` and `B  # [out, dim]` zero, so the policy starts exactly at the base model.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs
from attrs import validators as v

from reinforge.core.config import doc


def _dropout_range(_: Any, attribute: attrs.Attribute, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{attribute.name} must be in [0, 1) (the probability of zeroing an adapter input), got {value}")


def _names(value: Any) -> tuple[str, ...]:
    """A YAML list (or one string) of module names as a tuple."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


@attrs.define(kw_only=True, frozen=True)
class LoRAConfig:
    """Which linear layers get adapters, their rank and scale (NeMo-RL's `lora_cfg` names and defaults)."""

    enabled: bool = doc("train low-rank adapters instead of every weight (the base stays frozen)", default=False)
    dim: int = doc("adapter rank r: A is [dim, in_features], B is [out_features, dim]", default=8, validator=v.ge(1))
    alpha: float = doc(
        "scale numerator: the adapter's output is multiplied by alpha / dim (so changing dim keeps the update's size)",
        default=32.0,
        validator=v.gt(0),
    )
    dropout: float = doc("dropout probability on the adapter path, in [0, 1) (0 = off)", default=0.0, validator=_dropout_range)
    dropout_position: Literal["pre", "post"] = doc(
        "pre: dropout on the adapter's input x; post: on its output B A x", default="post"
    )
    target_modules: tuple[str, ...] = doc(
        "linear layers to adapt, by name: a leaf name (q_proj), a full name (model.layers.0.self_attn.q_proj) or a "
        "glob over full names (*.layers.0.*.q_proj). Needs match_all_linear: false; every entry must match a layer",
        factory=tuple,
        converter=_names,
    )
    exclude_modules: tuple[str, ...] = doc(
        "linear layers never adapted (same name forms as target_modules); every entry must match a layer",
        factory=tuple,
        converter=_names,
    )
    match_all_linear: bool = doc(
        "adapt every linear layer of the decoder (the output layer, lm_head, is left out as PEFT's all-linear does)",
        default=True,
    )
    lora_A_init: Literal["xavier", "uniform"] = doc(  # noqa: N815 - NeMo-RL's spelling
        "how A is drawn: xavier (normal, Glorot) or uniform (Kaiming-uniform, as nn.Linear); B always starts at zero",
        default="xavier",
    )

    def __attrs_post_init__(self) -> None:
        if self.match_all_linear and self.target_modules:
            raise ValueError(
                f"target_modules {list(self.target_modules)} is set, but match_all_linear: true adapts every linear "
                "layer; set match_all_linear: false to adapt only target_modules"
            )
        if not self.match_all_linear and not self.target_modules:
            raise ValueError("match_all_linear is false and target_modules is empty, so no layer would be adapted")

    @property
    def scale(self) -> float:
        """alpha / dim: what the adapter's output B A x is multiplied by."""
        return self.alpha / self.dim
