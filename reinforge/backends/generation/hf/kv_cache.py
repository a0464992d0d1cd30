"""A KV cache for `generate` that writes each step into memory reserved for the whole call.

Why: transformers' `DynamicCache` grows every layer's keys and values with `torch.cat`, so each
decode step copies the whole cache so far: quadratic in the response length. On the CPU demo's
model (6 layers, 128 rows, 64 new tokens) those copies were a third of a `generate` call's op time,
more than the matmuls. The length a call can reach is known before it starts (prompt width plus
`max_new_tokens`), so each layer reserves it once and a step writes only its own new position.

How it stays a `DynamicCache` in every other respect: `keys`/`values` are views of the filled part
of the reserved buffers, so sequence length, masks, attention and the cache's other methods see
exactly what they would see with concatenation. A method that replaces `keys` with a tensor of its
own (`batch_select_indices`, used by the shared-prompt prefill, or `reorder_cache`) simply makes
the next write reserve again around the new tensor; one that cuts it down to a view (`crop`) is
written over. Layers that are not plain full-attention layers (sliding windows, shared KV, linear
attention) keep transformers' own classes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

try:
    from transformers.cache_utils import DynamicCache, DynamicLayer
except ImportError:  # transformers before per-layer cache classes: generate builds its own cache
    DynamicCache = DynamicLayer = None

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def reserved_kv_cache(model: PreTrainedModel, length: int) -> Any | None:
    """A `DynamicCache` for `model` whose full-attention layers reserve `length` positions; None where unsupported.

    None (the caller lets `generate` build its own cache) for transformers releases without per-layer
    cache classes, or when no layer of the model is a plain `DynamicLayer`.
    """
    if DynamicLayer is None:
        return None
    try:
        cache = DynamicCache(config=model.config)
    except TypeError:  # a release whose DynamicCache takes no config
        return None
    layers = getattr(cache, "layers", None)
    if not layers:
        return None
    replaced = 0
    for index, layer in enumerate(layers):
        if type(layer) is DynamicLayer:  # exactly: subclasses (sliding windows, ...) keep their own update rule
            layers[index] = ReservedKVLayer(length)
            replaced += 1
    return cache if replaced else None


if DynamicLayer is None:
    ReservedKVLayer = None  # reserved_kv_cache returns None there, so nothing ever holds one
else:

    class ReservedKVLayer(DynamicLayer):
        """A `DynamicLayer` whose update writes into buffers of `capacity` positions instead of concatenating."""

        def __init__(self, capacity: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.capacity = capacity
            self._key_buffer: torch.Tensor | None = None  # [b, kv_heads, capacity, d]
            self._value_buffer: torch.Tensor | None = None

        def update(
            self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
        ) -> tuple[torch.Tensor, torch.Tensor]:
            # key_states, value_states  # [b, kv_heads, new, d]
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            held = self.get_seq_length()
            total = held + key_states.shape[-2]
            if not self._views_of_buffers(key_states, value_states, total):
                self._reserve(key_states, value_states, held, total)
            assert self._key_buffer is not None and self._value_buffer is not None
            self._key_buffer[:, :, held:total].copy_(key_states)
            self._value_buffer[:, :, held:total].copy_(value_states)
            self.keys = self._key_buffer[:, :, :total]
            self.values = self._value_buffer[:, :, :total]
            return self.keys, self.values

        def reset(self) -> None:
            self._key_buffer = self._value_buffer = None
            super().reset()

        def _views_of_buffers(self, key_states: torch.Tensor, value_states: torch.Tensor, total: int) -> bool:
            """Whether `keys`/`values` are still the filled part of the buffers, with room for `total` positions."""
            keys, values = self._key_buffer, self._value_buffer
            if keys is None or values is None or total > keys.shape[2]:
                return False
            if keys.shape[:2] != key_states.shape[:2] or keys.shape[3] != key_states.shape[3]:
                return False
            if values.shape[3] != value_states.shape[3] or keys.dtype != key_states.dtype or keys.device != key_states.device:
                return False
            if self.get_seq_length() == 0:
                return True
            return all(
                held.data_ptr() == reserved.data_ptr() and held.stride() == reserved.stride()
                for held, reserved in ((self.keys, keys), (self.values, values))
            )

        def _reserve(self, key_states: torch.Tensor, value_states: torch.Tensor, held: int, total: int) -> None:
            """New buffers of max(capacity, total) positions, holding the `held` positions cached so far."""
            size = max(self.capacity, total)
            batch, heads, _, _ = key_states.shape
            self._key_buffer = key_states.new_empty(batch, heads, size, key_states.shape[3])
            self._value_buffer = value_states.new_empty(batch, heads, size, value_states.shape[3])
            if held:
                self._key_buffer[:, :, :held].copy_(self.keys)
                self._value_buffer[:, :, :held].copy_(self.values)
