"""What every data-parallel training backend's ranks must agree on before a pass (shared by dtensor and megatron).

A rank whose rows are unusable must make every rank raise (a lone raise would leave the others waiting in
a collective), and a rank that runs out of rows still runs a tiny dummy row so the collectives stay paired.
`group` is any object with `.device` and `.max_over_dp(values) -> list[int]` (the backends' parallel contexts).
"""

from __future__ import annotations

from typing import Any

import torch

from reinforge.core.errors import ReinforgeError


def dummy_row(group: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """A two-token row (ids [1, 2], lengths [1]), run by ranks that have run out of rows."""
    return torch.zeros(1, 2, dtype=torch.long, device=group.device), torch.full((1,), 2, device=group.device)


def agree_on_rows(group: Any, problem: str | None, rows: int, passes: int, what: str) -> int:
    """Raise on every rank if any rank's rows are unusable or all are empty; return the max pass count."""
    most, flagged, widest = group.max_over_dp([passes, int(problem is not None), rows])
    if flagged:
        raise ReinforgeError(problem or f"{what}: another data-parallel rank rejected its rows (see its error)")
    if widest == 0:
        raise ReinforgeError(f"{what} got an empty batch (no rows); pass at least one sequence")
    return most
