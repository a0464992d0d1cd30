"""One optimizer step over this rank's rows, and logprob inference, for a `PolicyModule`.

Invariants the step keeps (NeMo-RL's loss normalisation):
- The loss function divides by the GLOBAL valid token / sequence counts (all ranks, all
  microbatches), so summing microbatch gradients gives the full-batch gradient for any split.
- FSDP2 averages gradients over the data-parallel ranks, so the loss is multiplied by the
  data-parallel size before backward (without FSDP, gradients are summed explicitly instead).
- Every data-parallel rank runs the same number of forward/backward passes, because FSDP's
  all-gathers and reduce-scatters are collectives: a rank with fewer rows runs zero-loss dummy
  microbatches rather than hang the others.
- A non-finite loss or gradient norm never reaches the optimizer: the gradients are dropped and
  a ReinforgeError names the step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

from reinforge.backends.training.dtensor import microbatching
from reinforge.backends.training.dtensor.config import DTensorConfig
from reinforge.backends.training.dtensor.distributed import ParallelContext
from reinforge.backends.training.dtensor.optim import clip_gradients, grad_norm
from reinforge.backends.training.dtensor.parallelize import reshard
from reinforge.core.batch import Batch
from reinforge.core.errors import ReinforgeError
from reinforge.backends.training.rank_agreement import agree_on_rows, dummy_row

REQUIRED_FOR_TRAIN = ("input_ids", "input_lengths", "token_mask")
REQUIRED_FOR_LOGPROBS = ("input_ids", "input_lengths")


def check_rows(batch: Batch, columns: tuple[str, ...], max_length: int, what: str) -> str | None:
    """Why this rank's rows cannot be used (a message), or None. Zero rows are allowed here (checked globally)."""
    if len(batch) == 0:
        return None
    missing = [key for key in columns if key not in batch]
    if missing:
        return f"{what} needs the batch columns {', '.join(missing)}; it has {', '.join(batch.keys())}"
    lengths = torch.as_tensor(batch["input_lengths"]).tolist()  # [B]
    width = batch["input_ids"].shape[1]
    for row, length in enumerate(lengths):
        if length > max_length:
            return (
                f"{what}: row {row} has {length} tokens, more than policy.max_total_sequence_length={max_length}; "
                "raise the limit or drop/truncate longer samples before training"
            )
        if length < 1:
            return f"{what}: row {row} is empty (input_lengths=0); drop empty rows before scoring or training"
        if length > width:
            return f"{what}: row {row} has input_lengths={length} but input_ids is only {width} wide"
    return None


def with_sample_mask(batch: Batch) -> Batch:
    """The batch, with `sample_mask  # [B]` of ones added when absent (loss functions read it)."""
    if len(batch) == 0 or "sample_mask" in batch:
        return batch
    out = batch.copy()
    out["sample_mask"] = torch.ones(len(batch), dtype=torch.float32)
    return out


def train_step(
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    ctx: ParallelContext,
    batch: Batch,
    loss_fn: Callable[..., tuple[torch.Tensor, dict[str, float]]],
    *,
    micro_batch_size: int,
    max_length: int,
    max_grad_norm: float | None,
    temperature: float,
    step: int,
    options: DTensorConfig | None = None,
) -> dict[str, float]:
    """Accumulate gradients over the microbatches, clip, and step the optimizer (not the scheduler)."""
    what = f"train (step {step})"
    problem = check_rows(batch, REQUIRED_FOR_TRAIN, max_length, what)
    options = options or DTensorConfig()
    batch = with_sample_mask(batch)
    micro = [] if problem or len(batch) == 0 else microbatching.plan(batch, options, micro_batch_size)
    for plan in micro:
        plan.batch = plan.batch.to(ctx.device)
    passes = agree_on_rows(ctx, problem, len(batch), len(micro), what)

    local = torch.zeros(3, dtype=torch.float64, device=ctx.device)  # valid tokens, valid sequences, microbatches
    for plan in micro:
        local[0] += plan.batch.valid_token_count().to(local)
        local[1] += plan.batch["sample_mask"].sum().to(local)
    local[2] = len(micro)
    counts = ctx.all_reduce(local)
    global_tokens, global_seqs = counts[0].float(), counts[1].float()  # scalars, equal on every rank

    scale = ctx.dp_size if ctx.fsdp else 1
    # The optimizer's parameters, not module.parameters(): after a no-grad forward FSDP2 may leave the
    # root's parameters registered unsharded, and their gradients land on the sharded ones.
    params = [p for group in optimizer.param_groups for p in group["params"]]
    optimizer.zero_grad(set_to_none=True)
    module.train()
    loss_total = torch.zeros((), dtype=torch.float32, device=ctx.device)
    per_micro: list[dict[str, float]] = []
    for index in range(passes):
        if index < len(micro):
            plan = micro[index]
            logprobs = microbatching.forward(module, plan, options, temperature, ctx.device)  # [b, t]
            loss, metrics = loss_fn(logprobs, plan.batch, global_tokens, global_seqs)
            per_micro.append(metrics)
        else:
            logprobs = module(*dummy_row(ctx), temperature)
            loss = logprobs.sum() * 0.0
        (loss * scale).backward()
        loss_total += loss.detach().float()
    if ctx.dp_size > 1 and not ctx.fsdp:
        _sum_gradients(params, ctx)

    metrics = reduce_metrics(per_micro, ctx)
    loss_value = float(ctx.all_reduce(loss_total))
    norm = float(grad_norm(params, ctx.device))
    if not (math.isfinite(loss_value) and math.isfinite(norm)):
        optimizer.zero_grad(set_to_none=True)
        raise ReinforgeError(
            f"train (step {step}): the loss ({loss_value}) or gradient norm ({norm}) is not finite; the gradients "
            "were discarded and the optimizer did not step. Check the loss inputs (advantages, logprobs, "
            "masks) and consider a lower learning rate"
        )
    if max_grad_norm is not None:
        clip_gradients(params, max_grad_norm, norm)
    lr = float(optimizer.param_groups[0]["lr"])
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    metrics.update({
        "loss": loss_value,
        "grad_norm": norm,
        "lr": lr,
        "tokens": float(counts[0]),
        "microbatches": float(counts[2]),
    })
    return metrics


def _sum_gradients(params: list[torch.nn.Parameter], ctx: ParallelContext) -> None:
    """Replicated data parallel (FSDP off): add up the gradients of the data-parallel ranks."""
    from torch.distributed.tensor import DTensor

    for param in params:
        if param.grad is not None:
            local = param.grad.to_local() if isinstance(param.grad, DTensor) else param.grad
            ctx.all_reduce(local)


def reduce_metrics(per_micro: list[dict[str, float]], ctx: ParallelContext) -> dict[str, float]:
    """Sum the loss function's metrics over microbatches and data-parallel ranks (`_min`/`_max` keys: min/max)."""
    keys = sorted({key for metrics in per_micro for key in metrics})
    if ctx.distributed and ctx.dp_size > 1:  # a rank with only dummy passes has no keys: agree on the union
        gathered: list[Any] = [None] * ctx.dp_size
        dist.all_gather_object(gathered, keys, group=ctx.mesh.get_group("dp"))  # type: ignore[union-attr]
        keys = sorted({key for ks in gathered for key in ks})
    ops = {"sum": [k for k in keys if not k.endswith(("_min", "_max"))],
           "min": [k for k in keys if k.endswith("_min")],
           "max": [k for k in keys if k.endswith("_max")]}
    start = {"sum": 0.0, "min": float("inf"), "max": float("-inf")}
    combine = {"sum": lambda a, b: a + b, "min": min, "max": max}
    out: dict[str, float] = {}
    for op, names in ops.items():
        if not names:
            continue
        values = []
        for name in names:
            value = start[op]
            for metrics in per_micro:
                if name in metrics:
                    value = combine[op](value, float(metrics[name]))
            values.append(value)
        reduced = ctx.all_reduce(torch.tensor(values, dtype=torch.float64, device=ctx.device), op)
        out.update(zip(names, reduced.tolist()))
    return out


@torch.no_grad()
def compute_logprobs(
    module: torch.nn.Module,
    ctx: ParallelContext,
    batch: Batch,
    *,
    batch_size: int,
    max_length: int,
    temperature: float,
    what: str,
    options: DTensorConfig | None = None,
) -> torch.Tensor:  # [B, T] float32 on the CPU
    """Per-token logprobs of this rank's rows, split into passes per `options`, in the batch's row order and width."""
    options = options or DTensorConfig()
    problem = check_rows(batch, REQUIRED_FOR_LOGPROBS, max_length, what)
    groups = [] if problem or len(batch) == 0 else microbatching.plan(batch, options, batch_size)
    passes = agree_on_rows(ctx, problem, len(batch), len(groups), what)
    module.eval()
    width = batch["input_ids"].shape[1] if len(batch) else 0
    out = torch.zeros(len(batch), width, dtype=torch.float32)  # [B, T]
    for index in range(passes):
        if index < len(groups):
            plan = groups[index]
            logprobs = microbatching.forward(module, plan, options, temperature, ctx.device)  # [b, t]
            out[torch.tensor(plan.rows), : logprobs.shape[1]] = logprobs.float().cpu()
        else:
            module(*dummy_row(ctx), temperature)
    reshard(module)
    return out
