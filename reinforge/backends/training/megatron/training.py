"""One optimizer step through Megatron-core's forward-backward schedule, and logprob inference.

Invariants the step keeps (the seam's contract, as `dtensor` keeps it):
- The loss function divides by the GLOBAL valid token / sequence counts (every microbatch of
  every data-parallel rank), so summing microbatch gradients gives the full-batch gradient.
- Megatron's schedule divides each microbatch loss by the number of microbatches, and its DDP
  averages gradients over the data-parallel ranks; the loss handed to the schedule is therefore
  multiplied by (microbatches x data-parallel size), which cancels both.
- Every data-parallel rank runs the same number of passes (DDP's gradient reduction is
  collective): a rank with fewer rows runs zero-loss dummy microbatches.
- A non-finite loss or gradient norm never reaches the optimizer: the gradients are dropped and
  a ReinforgeError names the step.
- With pipeline stages, the loss (and the logprobs) exist on the last stage only: Megatron's
  schedule runs the stages' forward and backward passes (1F1B) with point-to-point sends, and the
  loss, the metrics and the logprobs are then broadcast from the last stage over the pipeline
  group, so every rank returns the same values. The gradient norm is Megatron's, reduced over
  the tensor- and pipeline-parallel ranks (a tied output layer's copy counted once).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from reinforge.backends.training.megatron.logprobs import forward_logprobs
from reinforge.backends.training.megatron.runtime import MegatronGrid
from reinforge.backends.training.rank_agreement import agree_on_rows, dummy_row
from reinforge.backends.training.seam_checks import REQUIRED_FOR_LOGPROBS, REQUIRED_FOR_TRAIN, check_rows, with_sample_mask
from reinforge.backends.training.step_metrics import nonfinite_step_error, reduce_metrics
from reinforge.core.batch import Batch


def train_step(
    model: Any,  # Megatron DDP around the GPTModel
    gpt: Any,
    optimizer: Any,  # a MegatronOptimizer
    grid: MegatronGrid,
    batch: Batch,
    loss_fn: Callable[..., tuple[torch.Tensor, dict[str, float]]],
    *,
    micro_batch_size: int,
    max_length: int,
    max_grad_norm: float | None,
    temperature: float,
    lr: float,
    step: int,
    chunk_size: int,
    sequence_parallel: bool,
) -> dict[str, float]:
    """Accumulate gradients over the microbatches with Megatron's schedule, clip, and step the optimizer at `lr`."""
    from megatron.core.pipeline_parallel import get_forward_backward_func

    what = f"train (step {step})"
    problem = check_rows(batch, REQUIRED_FOR_TRAIN, max_length, what)
    batch = with_sample_mask(batch)
    micro = [] if problem or len(batch) == 0 else [mb.to(grid.device) for mb in batch.microbatches(size=micro_batch_size)]
    passes = agree_on_rows(grid, problem, len(batch), len(micro), what)

    local = torch.zeros(3, dtype=torch.float64, device=grid.device)  # valid tokens, valid sequences, microbatches
    for mb in micro:
        local[0] += mb.valid_token_count().to(local)
        local[1] += mb["sample_mask"].sum().to(local)
    local[2] = len(micro)
    counts = grid.all_reduce(local)
    global_tokens, global_seqs = counts[0].float(), counts[1].float()  # scalars, equal on every rank

    scale = passes * grid.dp_size
    items: list[Batch | None] = [*micro, *([None] * (passes - len(micro)))]
    per_micro: list[dict[str, float]] = []
    loss_total = torch.zeros((), dtype=torch.float32, device=grid.device)

    def forward_step(data_iterator: Any, module: Any) -> tuple[torch.Tensor, Callable[[torch.Tensor], Any]]:
        mb = next(data_iterator)
        ids, lengths = dummy_row(grid) if mb is None else (mb["input_ids"], mb["input_lengths"])
        logprobs = forward_logprobs(
            module, gpt, ids, lengths, temperature=temperature, chunk_size=chunk_size, sequence_parallel=sequence_parallel
        )  # [b, t]

        def loss_func(output: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
            nonlocal loss_total
            if mb is None:
                loss = output.sum() * 0.0
            else:
                loss, metrics = loss_fn(output, mb, global_tokens, global_seqs)
                per_micro.append(metrics)
            loss_total = loss_total + loss.detach().float()
            return loss * scale, {}

        return logprobs, loss_func

    model.zero_grad_buffer()
    optimizer.zero_grad()
    model.train()
    width = batch["input_ids"].shape[1] if len(batch) else 2
    get_forward_backward_func()(
        forward_step_func=forward_step,
        data_iterator=iter(items),
        model=[model],
        num_microbatches=passes,
        seq_length=width,
        micro_batch_size=micro_batch_size,
        forward_only=False,
    )

    metrics = grid.object_from_last_stage(reduce_metrics(per_micro, grid, grid.group("dp")))
    loss_value = float(grid.broadcast_from_last_stage(grid.all_reduce(loss_total.reshape(1)))[0])
    optimizer.prepare_grads()  # model gradients -> the optimizer's (main) gradients
    norm = float(optimizer.clip_grad_norm(max_grad_norm) if max_grad_norm is not None else optimizer.get_grad_norm())
    error = nonfinite_step_error(loss_value, norm, step)
    if error is not None:
        optimizer.zero_grad()
        model.zero_grad_buffer()
        raise error
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.step_with_ready_grads()
    optimizer.zero_grad()
    model.zero_grad_buffer()
    metrics.update({
        "loss": loss_value,
        "grad_norm": norm,
        "lr": lr,
        "tokens": float(counts[0]),
        "microbatches": float(counts[2]),
    })
    return metrics


@torch.no_grad()
def compute_logprobs(
    model: Any,
    gpt: Any,
    grid: MegatronGrid,
    batch: Batch,
    *,
    batch_size: int,
    max_length: int,
    temperature: float,
    chunk_size: int,
    sequence_parallel: bool,
    what: str,
) -> torch.Tensor:  # [B, T] float32 on the CPU
    """Per-token logprobs of this rank's rows, `batch_size` rows per forward pass (Megatron's schedule, forward only)."""
    from megatron.core.pipeline_parallel import get_forward_backward_func

    problem = check_rows(batch, REQUIRED_FOR_LOGPROBS, max_length, what)
    groups = [] if problem or len(batch) == 0 else batch.microbatches(size=batch_size)
    agree_on_rows(grid, problem, len(batch), len(groups), what)
    model.eval()
    width = batch["input_ids"].shape[1] if len(batch) else 0
    out = torch.zeros(len(batch), width, dtype=torch.float32)  # [B, T]
    if not groups:  # this replica has no rows (another data-parallel replica has)
        return out
    pieces: list[torch.Tensor] = []  # [b, t] per group, on the last pipeline stage

    def forward_step(data_iterator: Any, module: Any) -> tuple[torch.Tensor, Callable[[torch.Tensor], Any]]:
        group = next(data_iterator)
        ids, lengths = group["input_ids"].to(grid.device), group["input_lengths"].to(grid.device)
        output = forward_logprobs(
            module, gpt, ids, lengths, temperature=temperature, chunk_size=chunk_size, sequence_parallel=sequence_parallel
        )  # [b, t] on the last stage

        def keep(logprobs: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
            pieces.append(logprobs.float().cpu())
            return logprobs.new_zeros(()), {}  # the schedule wants a loss; nothing is reduced from it

        return output, keep

    get_forward_backward_func()(
        forward_step_func=forward_step,
        data_iterator=iter(groups),
        model=[model],
        num_microbatches=len(groups),
        seq_length=width,
        micro_batch_size=batch_size,
        forward_only=True,
    )
    row = 0
    for piece in pieces:
        out[row : row + len(piece), : piece.shape[1]] = piece
        row += len(piece)
    return grid.broadcast_from_last_stage(out.to(grid.device)).cpu()
