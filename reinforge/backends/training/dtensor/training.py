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

from collections.abc import Callable

import torch

from reinforge.backends.training.dtensor import microbatching
from reinforge.backends.training.dtensor.config import DTensorConfig
from reinforge.backends.training.dtensor.distributed import ParallelContext
from reinforge.backends.training.dtensor.optim import clip_gradients, grad_norm
from reinforge.backends.training.dtensor.parallelize import reshard
from reinforge.backends.training.rank_agreement import agree_on_rows
from reinforge.backends.training.seam_checks import REQUIRED_FOR_LOGPROBS, REQUIRED_FOR_TRAIN, check_rows, with_sample_mask
from reinforge.backends.training.step_metrics import nonfinite_step_error, reduce_metrics
from reinforge.core.batch import Batch


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
    micro = [] if problem or len(batch) == 0 else microbatching.plan(batch, options, micro_batch_size, scoring=False)
    for plan in micro:
        plan.batch = plan.batch.to(ctx.device)
    passes = agree_on_rows(ctx, problem, len(batch), len(micro), what)

    # valid tokens, valid sequences, microbatches, and the positions the decoder (padding included) and the
    # output layer compute: what the step cost, for utilisation figures (idle passes of FSDP are not counted)
    local = torch.zeros(5, dtype=torch.float64, device=ctx.device)
    for plan in micro:
        local[0] += plan.batch.valid_token_count().to(local)
        local[1] += plan.batch["sample_mask"].sum().to(local)
        local[3] += plan.positions
        local[4] += plan.head_positions(options)
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
            logprobs = microbatching.idle_forward(module, batch, options, temperature, ctx, scoring=False)
            loss = logprobs.sum() * 0.0
        (loss * scale).backward()
        loss_total += loss.detach().float()
    if ctx.dp_size > 1 and not ctx.fsdp:
        _sum_gradients(params, ctx)

    metrics = reduce_metrics(per_micro, ctx, ctx.mesh.get_group("dp") if ctx.mesh is not None else None)
    loss_value = float(ctx.all_reduce(loss_total))
    norm = float(grad_norm(params, ctx.device))
    error = nonfinite_step_error(loss_value, norm, step)
    if error is not None:
        optimizer.zero_grad(set_to_none=True)
        raise error
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
        "positions": float(counts[3]),
        "head_positions": float(counts[4]),
    })
    return metrics


def _sum_gradients(params: list[torch.nn.Parameter], ctx: ParallelContext) -> None:
    """Replicated data parallel (FSDP off): add up the gradients of the data-parallel ranks."""
    from torch.distributed.tensor import DTensor

    for param in params:
        if param.grad is not None:
            local = param.grad.to_local() if isinstance(param.grad, DTensor) else param.grad
            ctx.all_reduce(local)


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
    groups = [] if problem or len(batch) == 0 else microbatching.plan(batch, options, batch_size, scoring=True)
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
            microbatching.idle_forward(module, batch, options, temperature, ctx, scoring=True)
    reshard(module)
    return out
