"""The learning-rate schedules of `policy.scheduler`, as factors on the peak lr (shared by every training backend).

Both built-in backends call this one function, so a run schedules its learning rate identically on either.
"""

from __future__ import annotations

import math

from reinforge.core.run_config import SchedulerConfig


def lr_multiplier(config: SchedulerConfig, step: int) -> float:
    """Factor on the peak lr for optimizer step `step` (0-based: the first step uses `step=0`).

    constant: 1. linear_warmup: warmup_start_factor at step 0 rising linearly to 1 at
    warmup_steps, then 1. cosine: the same warmup, then half a cosine from 1 down to
    min_lr_ratio at total_steps, then min_lr_ratio.
    """
    if config.name == "constant":
        return 1.0
    if step < config.warmup_steps:
        start = config.warmup_start_factor
        return start + (1.0 - start) * step / config.warmup_steps
    if config.name == "linear_warmup":
        return 1.0
    assert config.total_steps is not None  # SchedulerConfig enforces it for cosine
    span = max(config.total_steps - config.warmup_steps, 1)
    progress = min((step - config.warmup_steps) / span, 1.0)
    floor = config.min_lr_ratio
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
