"""Checkpoints with Megatron-core's distributed checkpointing (`megatron.core.dist_checkpointing`).

Layout of `save(directory)`:

    directory/
      mcore/                model + optimizer, as Megatron's sharded state dicts (torch_dist format:
                            every rank writes its shards in parallel; loading reshards, so a checkpoint
                            saved with one tensor/data-parallel layout loads with another)
      trainer_state.pt      optimizer step count (rank 0)
      rng_rank<r>.pt        torch CPU (and CUDA) RNG state of rank r
      reinforge_backend.json  what wrote it (backend, model, precision, parallel sizes, step)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from reinforge.backends.training.megatron.runtime import MegatronGrid
from reinforge.core.errors import ReinforgeError

MCORE_DIR = "mcore"
STATE_FILE = "trainer_state.pt"
META_FILE = "reinforge_backend.json"
FORMAT_VERSION = 1


def _sharded(gpt: Any, optimizer: Any, *, loading: bool) -> dict[str, Any]:
    model_sd = gpt.sharded_state_dict(prefix="")
    return {"model": model_sd, "optimizer": optimizer.sharded_state_dict(model_sd, is_loading=loading)}


def save_checkpoint(directory: str | Path, *, gpt: Any, optimizer: Any, step: int, grid: MegatronGrid, info: dict[str, Any]) -> None:
    """Write model, optimizer, step and RNG state (every rank calls this)."""
    from megatron.core import dist_checkpointing

    path = Path(directory)
    (path / MCORE_DIR).mkdir(parents=True, exist_ok=True)
    grid.barrier()
    dist_checkpointing.save(_sharded(gpt, optimizer, loading=False), str(path / MCORE_DIR))
    torch.save(_rng_state(), path / f"rng_rank{grid.rank}.pt")
    if grid.is_writer:
        torch.save({"format": FORMAT_VERSION, "step": step}, path / STATE_FILE)
        meta = {"format": FORMAT_VERSION, "backend": "megatron", "step": step, **info}
        (path / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    grid.barrier()


def load_checkpoint(directory: str | Path, *, gpt: Any, optimizer: Any, grid: MegatronGrid) -> int:
    """Restore what `save_checkpoint` wrote; return the step count."""
    from megatron.core import dist_checkpointing

    path = Path(directory)
    if not (path / MCORE_DIR / "metadata.json").is_file() or not (path / STATE_FILE).is_file():
        raise ReinforgeError(
            f"'{path}' is not a megatron checkpoint (expected {MCORE_DIR}/metadata.json and {STATE_FILE}); "
            "pass the policy/ folder that MegatronBackend.save wrote"
        )
    state = dist_checkpointing.load(_sharded(gpt, optimizer, loading=True), str(path / MCORE_DIR))
    gpt.load_state_dict(state["model"], strict=False)  # strict=False: Transformer Engine's _extra_state entries
    optimizer.load_state_dict(state["optimizer"])
    saved = torch.load(path / STATE_FILE, weights_only=True)
    rng_file = path / f"rng_rank{grid.rank}.pt"
    if rng_file.is_file():  # absent when loading with more ranks than saved: keep this rank's seed
        _set_rng_state(torch.load(rng_file, weights_only=True))
    grid.barrier()
    return int(saved["step"])


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
