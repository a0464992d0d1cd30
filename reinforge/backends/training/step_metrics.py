"""What a training step reports, reduced the same way by every backend (shared by dtensor and megatron)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed as dist

from reinforge.core.errors import ReinforgeError


def reduce_metrics(per_micro: list[dict[str, float]], ranks: Any, dp_group: Any) -> dict[str, float]:
    """Sum the loss function's metrics over microbatches and data-parallel ranks (`_min`/`_max` keys: min/max).

    `ranks` has `.dp_size`, `.device` and `.all_reduce(tensor, op)` over the data-parallel ranks
    (the backends' parallel contexts); `dp_group` is their process group (None in one process).
    """
    keys = sorted({key for metrics in per_micro for key in metrics})
    if ranks.dp_size > 1:  # a rank with only dummy passes has no keys: agree on the union
        gathered: list[Any] = [None] * ranks.dp_size
        dist.all_gather_object(gathered, keys, group=dp_group)
        keys = sorted({key for ks in gathered for key in ks})
    ops = {"sum": [k for k in keys if not k.endswith(("_min", "_max"))],
           "min": [k for k in keys if k.endswith("_min")],
           "max": [k for k in keys if k.endswith("_max")]}  # fmt: skip
    start = {"sum": 0.0, "min": math.inf, "max": -math.inf}
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
        reduced = ranks.all_reduce(torch.tensor(values, dtype=torch.float64, device=ranks.device), op)
        out.update(zip(names, reduced.tolist()))
    return out


def nonfinite_step_error(loss_value: float, norm: float, step: int) -> ReinforgeError | None:
    """The error to raise (after dropping the gradients) when the loss or the gradient norm is not finite, else None."""
    if math.isfinite(loss_value) and math.isfinite(norm):
        return None
    return ReinforgeError(
        f"train (step {step}): the loss ({loss_value}) or gradient norm ({norm}) is not finite; the gradients "
        "were discarded and the optimizer did not step. Check the loss inputs (advantages, logprobs, "
        "masks) and consider a lower learning rate"
    )
