"""An estimate of one rank's peak memory in a training step, from the model's shape and the policy's settings.

Why: a run that does not fit fails late (after loading, generating and scoring) and with an
allocator error that names no setting. The estimate says up front which part dominates (weights,
optimizer state, activations of the largest micro-batch, the output layer's logits) so the user
knows which knob to turn, and it is the yardstick the benchmarks measure peak memory against.

What it counts, in bytes, for the steady state (after the first optimizer step has created the
optimizer state):
- weights, gradients and optimizer state (AdamW/Adam: two tensors per parameter; SGD: none), in the
  parameters' dtype, divided over the ranks that shard them (FSDP x tensor parallel); gradients and
  optimizer state only for trainable parameters (with LoRA: the adapters, not the frozen base);
- the optimizer step's temporaries: AdamW's per-tensor path holds two parameter-sized temporaries of
  the largest tensor; the foreach path (GPU DTensors) one of every tensor; the fused kernel (plain
  tensors, see optim.py) updates in place and holds none;
- activations kept for backward by the decoder layers for the largest micro-batch, per token and
  layer (a Llama/Qwen2 layer with SDPA attention; key/value heads are expanded to the query heads
  as transformers does on CPU): the input and output of both RMSNorms (float32) and their rsqrt,
  the projections' inputs, rotated queries, expanded keys and values, the attention output and its
  log-sum-exp (float32), and the MLP's gate, activation, up and product; with activation
  checkpointing only each layer's input, plus one layer's activations while it is recomputed;
- the output layer in chunks (see logprobs.py): one float32 [positions x V] tensor of one chunk (the
  logits, which `TargetLogSoftmax` overwrites with their gradient in backward) and its blocked
  temporary (at most 8 MB), plus the head's own output when the model is not float32;
- the no-grad logprob pass (gradients freed by then): one float32 logits chunk and its temporary, and
  a layer's worth of hidden states for `logprob_batch_size` rows.
Not counted: the CUDA/NCCL context, allocator fragmentation, the Python process, a colocated
generator. Tokens of the largest micro-batch are `train_micro_batch_size x sequence_length` for fixed
and sorted micro-batches, and the token budget for token_budget and sequence packing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from reinforge.backends.training.dtensor.config import DTensorConfig
from reinforge.backends.training.dtensor.logprobs import TEMPORARY_BYTES

if TYPE_CHECKING:
    from reinforge.core.run_config import PolicyConfig

DTYPE_BYTES = {"float32": 4, "bfloat16": 2}
FLOAT32 = 4


@attrs.frozen(kw_only=True)
class ModelShape:
    """What the estimate needs to know about a decoder-only model."""

    num_parameters: int
    largest_parameter: int  # elements of the biggest single tensor (the optimizer step's temporaries)
    hidden_size: int
    num_layers: int
    num_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    # Parameters that get gradients and optimizer state (None: all of them), and the largest such tensor.
    trainable_parameters: int | None = None
    largest_trainable: int | None = None

    @classmethod
    def from_model(cls, model: Any) -> ModelShape:
        """From a Hugging Face causal LM (its config, and its parameters counted once each, tied ones once)."""
        config = model.config
        sizes = [p.numel() for p in model.parameters()]  # a DTensor reports its global size
        trainable = [p.numel() for p in model.parameters() if p.requires_grad]
        frozen = len(trainable) < len(sizes)
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        return cls(
            num_parameters=sum(sizes),
            largest_parameter=max(sizes),
            hidden_size=config.hidden_size,
            num_layers=config.num_hidden_layers,
            num_heads=heads,
            head_dim=head_dim,
            intermediate_size=config.intermediate_size,
            vocab_size=config.vocab_size,
            trainable_parameters=sum(trainable) if frozen else None,
            largest_trainable=max(trainable, default=0) if frozen else None,
        )

    @classmethod
    def from_config(cls, config: Any) -> ModelShape:
        """From a Hugging Face model config alone: the model is built on the meta device to count parameters."""
        import torch
        from transformers import AutoModelForCausalLM

        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
        return cls.from_model(model)


@attrs.frozen(kw_only=True)
class MemoryEstimate:
    """Bytes per rank; `total` is the peak of the training step and of the logprob pass."""

    weights: int
    gradients: int
    optimizer_state: int
    optimizer_step: int  # temporaries while the optimizer steps
    activations: int  # decoder layers, largest micro-batch
    logits: int  # one output-layer chunk in backward
    reference: int  # frozen reference weights (KL penalty only; 0 with LoRA: the base with adapters off)
    logprob_pass: int  # activations and logits of the no-grad logprob pass

    @property
    def training_peak(self) -> int:
        resident = self.weights + self.gradients + self.optimizer_state + self.reference
        return resident + max(self.activations + self.logits, self.optimizer_step)

    @property
    def logprob_peak(self) -> int:
        return self.weights + self.optimizer_state + self.reference + self.logprob_pass

    @property
    def total(self) -> int:
        return max(self.training_peak, self.logprob_peak)

    def as_dict(self) -> dict[str, int]:
        return {**attrs.asdict(self), "training_peak": self.training_peak, "logprob_peak": self.logprob_peak,
                "total": self.total}


def layer_activation_bytes(shape: ModelShape, dtype_bytes: int) -> int:
    """Bytes one decoder layer keeps for backward, per token (see the module docstring)."""
    h, attention, i = shape.hidden_size, shape.num_heads * shape.head_dim, shape.intermediate_size
    norms = 2 * (2 * h + 1) * FLOAT32  # two RMSNorms: input, normalised output (float32), rsqrt
    projections_in = 2 * h * dtype_bytes  # q/k/v input and the MLP input (the norms' weighted outputs)
    # rotated q, k and v expanded to the query heads, the attention output, o_proj's input; the float32 log-sum-exp
    attention_bytes = 5 * attention * dtype_bytes + shape.num_heads * FLOAT32
    mlp = 4 * i * dtype_bytes  # gate, activation, up, their product
    return norms + projections_in + attention_bytes + mlp


def microbatch_tokens(policy: PolicyConfig, options: DTensorConfig, sequence_length: int) -> int:
    """Tokens of the largest training forward pass."""
    padded = policy.train_micro_batch_size * sequence_length
    if options.sequence_packing or options.microbatching == "token_budget":
        return options.max_tokens_per_microbatch or padded
    return padded


def estimate_training_memory(
    shape: ModelShape,
    policy: PolicyConfig,
    options: DTensorConfig | None = None,
    *,
    need_reference: bool = False,
    shards: int = 1,
    foreach_optimizer: bool = False,
    fused_optimizer: bool = False,
    sequence_length: int | None = None,
) -> MemoryEstimate:
    """Peak memory of one rank (see the module docstring for what is counted and what is not).

    `shards`: ranks that split the parameters (FSDP data-parallel size x tensor-parallel size, or the
    tensor-parallel size alone without FSDP). `foreach_optimizer`: torch's multi-tensor optimizer
    path (its default on GPU). `fused_optimizer`: torch's fused Adam kernel (in place). `sequence_length`: the longest row (default
    `policy.max_total_sequence_length`, the worst case).
    """
    options = options or DTensorConfig()
    b = DTYPE_BYTES[policy.precision]
    length = sequence_length or policy.max_total_sequence_length
    parameter_bytes = shape.num_parameters * b // shards
    trainable = shape.num_parameters if shape.trainable_parameters is None else shape.trainable_parameters
    largest_trainable = shape.largest_parameter if shape.largest_trainable is None else shape.largest_trainable
    trainable_bytes = trainable * b // shards
    adam = policy.optimizer.name in ("adam", "adamw")
    if not adam or fused_optimizer:
        step_temporaries = 0
    elif foreach_optimizer:
        step_temporaries = trainable_bytes
    else:
        step_temporaries = 2 * largest_trainable * b

    tokens = microbatch_tokens(policy, options, length)
    per_layer = layer_activation_bytes(shape, b)
    h = shape.hidden_size
    final_norm = (2 * h + 1) * FLOAT32 + h * b  # the final RMSNorm and the hidden states the head reads
    if options.activation_checkpointing:
        layers = tokens * (shape.num_layers * h * b + per_layer)
    else:
        layers = tokens * shape.num_layers * per_layer
    activations = layers + tokens * final_norm

    packed = options.sequence_packing
    rows = 1 if packed else max(tokens // length, 1)
    width = tokens if packed else length
    positions = rows * min(options.logprob_chunk_size, max(width - 1, 1))  # logits positions of one chunk
    head_output = 0 if b == FLOAT32 else positions * shape.vocab_size * b
    chunk_logits = positions * shape.vocab_size * FLOAT32
    logits = chunk_logits + min(chunk_logits, TEMPORARY_BYTES) + head_output

    lp_rows = policy.logprob_batch_size
    lp_positions = lp_rows * min(options.logprob_chunk_size, max(length - 1, 1))
    lp_hidden = lp_rows * length * (3 * h + 2 * shape.intermediate_size) * b  # residual, hidden, MLP gate and up
    lp_logits = lp_positions * shape.vocab_size * FLOAT32
    logprob_pass = lp_logits + min(lp_logits, TEMPORARY_BYTES) + lp_hidden

    return MemoryEstimate(
        weights=parameter_bytes,
        gradients=trainable_bytes,
        optimizer_state=2 * trainable_bytes if adam else 0,
        optimizer_step=step_temporaries,
        activations=activations,
        logits=logits,
        reference=parameter_bytes if need_reference and not policy.lora.enabled else 0,
        logprob_pass=logprob_pass,
    )


def measured_peak(device: Any) -> dict[str, float]:
    """What was measured, as train metrics: on CUDA the peak torch allocated since the last reset (then reset);
    elsewhere the process's peak resident set so far (ru_maxrss: everything the process ever held at once)."""
    import torch

    if device.type == "cuda":
        peak = float(torch.cuda.max_memory_allocated(device))
        torch.cuda.reset_peak_memory_stats(device)
        return {"memory_peak_allocated_bytes": peak}
    import resource

    return {"memory_peak_rss_bytes": float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)}  # Linux: KiB
