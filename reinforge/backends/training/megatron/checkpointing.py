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

from pathlib import Path
from typing import Any


from reinforge.backends.training.checkpoint_files import read_trainer_files, require_checkpoint, write_trainer_files
from reinforge.backends.training.megatron.runtime import MegatronGrid

MCORE_DIR = "mcore"


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
    write_trainer_files(path, rank=grid.rank, is_writer=grid.is_writer, backend="megatron", step=step, info=info)
    grid.barrier()


def load_checkpoint(directory: str | Path, *, gpt: Any, optimizer: Any, grid: MegatronGrid) -> int:
    """Restore what `save_checkpoint` wrote; return the step count."""
    from megatron.core import dist_checkpointing

    path = Path(directory)
    require_checkpoint(path, f"{MCORE_DIR}/metadata.json", backend="megatron", saver="MegatronBackend.save")
    state = dist_checkpointing.load(_sharded(gpt, optimizer, loading=True), str(path / MCORE_DIR))
    gpt.load_state_dict(state["model"], strict=False)  # strict=False: Transformer Engine's _extra_state entries
    optimizer.load_state_dict(state["optimizer"])
    saved = read_trainer_files(path, rank=grid.rank)
    grid.barrier()
    return int(saved["step"])

