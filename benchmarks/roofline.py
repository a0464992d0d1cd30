"""What a decoder-only model's generation costs on paper, and what this machine can do: FLOPs, bytes, peaks.

The arithmetic (nothing here runs a model, so tests pin it by hand) covers decoders shaped like Llama,
Qwen2 and Mistral: per layer the q, k, v, o projections (grouped-query: k and v have `kv_heads`) and a
gated MLP of three `hidden x ffn` matrices; then the output layer (`vocab x hidden`, counted even when tied
to the embedding, because its matmul runs). Counted per decode step, for `rows` rows that each feed one
new token and attend to `context` positions (the new one included):

- FLOPs = 2 x matmul weights x rows (decoder projections + output layer; the embedding is a lookup and
  norms, rotary, activations, softmax and sampling are left out, well under 1 % here)
  + attention 4 x layers x heads x head_dim x context x rows (q.k over the context, then the weighted sum of v);
- bytes = every matmul weight read once (the step's rows share it) + the KV cache read for all rows,
  2 (k and v) x layers x kv_heads x head_dim x context x rows, at `dtype_bytes` per value. Writes of the
  new k/v, activations and logits are left out (a few rows x hidden or vocab per step).

Prefill counts every prompt position through the decoder and the output layer at the last position only
(transformers' `generate` and vLLM both keep only that one); attention is causal (position i of a prompt
attends to i positions). The bound of a step is max(FLOPs / matmul peak, bytes / bandwidth): the time a
step could not beat even if it ran at the machine's peak compute or at its streaming bandwidth, whichever
binds. The peaks are measured here (`matmul_rates`, `stream_rates`) with the threads torch is set to.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import attrs


@attrs.define(kw_only=True, frozen=True)
class DecoderShape:
    """The sizes the arithmetic needs, read from a Hugging Face config.json."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int  # width of the gated MLP
    vocab: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DecoderShape:
        heads = int(config["num_attention_heads"])
        return cls(
            layers=int(config["num_hidden_layers"]),
            hidden=int(config["hidden_size"]),
            heads=heads,
            kv_heads=int(config.get("num_key_value_heads") or heads),
            head_dim=int(config.get("head_dim") or config["hidden_size"] // heads),
            ffn=int(config["intermediate_size"]),
            vocab=int(config["vocab_size"]),
        )

    @property
    def decoder_weights(self) -> int:
        """Matmul weights of all decoder layers: q, k, v, o and the three MLP matrices."""
        attention = 2 * self.hidden * self.heads * self.head_dim + 2 * self.hidden * self.kv_heads * self.head_dim
        return self.layers * (attention + 3 * self.hidden * self.ffn)

    @property
    def head_weights(self) -> int:
        """The output layer, vocab x hidden."""
        return self.vocab * self.hidden

    @property
    def matmul_weights(self) -> int:
        return self.decoder_weights + self.head_weights


def decode_step(shape: DecoderShape, rows: int, context: float, dtype_bytes: int = 4) -> dict[str, float]:
    """FLOPs and bytes of one decode step (see the module docstring); `context` may be a mean over rows or steps
    (both counts are linear in it)."""
    matmul = 2.0 * shape.matmul_weights * rows
    attention = 4.0 * shape.layers * shape.heads * shape.head_dim * context * rows
    weights = float(shape.matmul_weights * dtype_bytes)
    kv = 2.0 * shape.layers * shape.kv_heads * shape.head_dim * context * rows * dtype_bytes
    return {"flops": matmul + attention, "matmul_flops": matmul, "attention_flops": attention,
            "bytes": weights + kv, "weight_bytes": weights, "kv_bytes": kv}  # fmt: skip


def prefill(shape: DecoderShape, prompt_lengths: Sequence[int], dtype_bytes: int = 4) -> dict[str, float]:
    """FLOPs and bytes of the prefill of rows with these prompt lengths (decoder at every position, output layer
    at the last, causal attention); bytes: the weights once and the KV cache written."""
    positions = sum(prompt_lengths)
    matmul = 2.0 * (shape.decoder_weights * positions + shape.head_weights * len(prompt_lengths))
    attended = sum(p * (p + 1) / 2 for p in prompt_lengths)  # position i attends to i positions
    attention = 4.0 * shape.layers * shape.heads * shape.head_dim * attended
    weights = float(shape.matmul_weights * dtype_bytes)
    kv = 2.0 * shape.layers * shape.kv_heads * shape.head_dim * positions * dtype_bytes
    return {"flops": matmul + attention, "matmul_flops": matmul, "attention_flops": attention,
            "bytes": weights + kv, "weight_bytes": weights, "kv_bytes": kv}  # fmt: skip


def bound_seconds(flops: float, nbytes: float, peak_flops: float, bandwidth: float) -> float:
    """max(FLOPs / peak, bytes / bandwidth): the time neither the compute nor the memory side could beat."""
    if peak_flops <= 0 or bandwidth <= 0:
        raise ValueError(f"the bound needs a positive peak and bandwidth, got {peak_flops} and {bandwidth}")
    return max(flops / peak_flops, nbytes / bandwidth)


def workload(shape: DecoderShape, prompt_lengths: Sequence[int], new_tokens: int, peak_flops: float, bandwidth: float,
             dtype_bytes: int = 4) -> dict[str, Any]:  # fmt: skip
    """Prefill (which yields the first token), then `new_tokens - 1` decode steps; step s (from 1) feeds token s
    and attends to prompt + s positions. FLOPs, bytes and bounds of each part and of the whole."""
    rows = len(prompt_lengths)
    mean_prompt = sum(prompt_lengths) / rows
    first = prefill(shape, prompt_lengths, dtype_bytes)
    steps = [decode_step(shape, rows, mean_prompt + s, dtype_bytes) for s in range(1, new_tokens)]
    step_bounds = [bound_seconds(s["flops"], s["bytes"], peak_flops, bandwidth) for s in steps]
    prefill_bound = bound_seconds(first["flops"], first["bytes"], peak_flops, bandwidth)
    decode_flops, decode_bytes = sum(s["flops"] for s in steps), sum(s["bytes"] for s in steps)
    return {
        "rows": rows, "new_tokens": new_tokens, "mean_prompt_tokens": mean_prompt,
        "prefill": {**first, "bound_seconds": prefill_bound},
        "decode": {"steps": len(steps), "flops": decode_flops, "bytes": decode_bytes, "bound_seconds": sum(step_bounds)},
        "flops": first["flops"] + decode_flops,
        "bytes": first["bytes"] + decode_bytes,
        "bound_seconds": prefill_bound + sum(step_bounds),
    }  # fmt: skip


# ---------------------------------------------------------------------- what the machine does
def matmul_rates(m: int, k: int, n: int, repeats: int) -> list[float]:
    """FLOP/s of `repeats` fp32 matmuls [m, k] @ [k, n] (as a linear layer: x @ W.T), after one warm-up,
    with the threads torch is set to."""
    import torch

    x, weight = torch.randn(m, k), torch.randn(n, k)
    out = torch.empty(m, n)
    torch.matmul(x, weight.T, out=out)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(x, weight.T, out=out)
        rates.append(2.0 * m * k * n / (time.perf_counter() - start))
    return rates


def stream_rates(mib: float, repeats: int) -> dict[str, list[float]]:
    """Bytes/s of STREAM's copy (a = b: 2 arrays moved) and triad (a = b + s c: 3 arrays) on fp32 arrays of `mib`
    MiB each, after one warm-up of each, with the threads torch is set to; write-allocate traffic not counted,
    as STREAM does not."""
    import torch

    n = int(mib * 2**20 // 4)
    a, b, c = torch.zeros(n), torch.ones(n), torch.full((n,), 2.0)
    rates: dict[str, list[float]] = {"copy": [], "triad": []}
    kernels = {"copy": (lambda: a.copy_(b), 2), "triad": (lambda: torch.add(b, c, alpha=3.0, out=a), 3)}
    for kernel, _ in kernels.values():
        kernel()
    for _ in range(repeats):
        for name, (kernel, arrays) in kernels.items():
            start = time.perf_counter()
            kernel()
            rates[name].append(arrays * n * 4 / (time.perf_counter() - start))
    return rates
