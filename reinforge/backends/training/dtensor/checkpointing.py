"""Checkpoints with torch.distributed.checkpoint (DCP), and Hugging Face folders from live or saved weights.

Layout of `save(directory)`:

    directory/
      dcp/                  model + optimizer state (DCP: .metadata, __<rank>_0.distcp); keys
                            "model.<hf name>" and "optimizer.state.<hf name>.<exp_avg|...>"
      trainer_state.pt      step count and LR-scheduler state (written by rank 0)
      rng_rank<r>.pt        torch CPU (and CUDA) RNG state of rank r
      reinforge_backend.json  what wrote it (backend, model, precision, world and TP size, step)

DCP writes every rank's shards in parallel and reshards on load, so a checkpoint saved with N
ranks loads with M. In one process it runs with `no_dist=True`: no process group is needed.
`dcp_to_hf` reads only the "model." keys, offline, in one process (`reinforge convert`).

Loading never unpickles arbitrary objects: DCP's `.metadata` and non-tensor entries go through
`safe_dcp` (an allow-list unpickler and `weights_only=True`), and the `.pt` files load with
`weights_only=True`. The caller checks the checkpoint's manifest before any of this.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)

from reinforge.backends.training.checkpoint_files import read_trainer_files, require_checkpoint, write_trainer_files
from reinforge.backends.training.dtensor.distributed import ParallelContext
from reinforge.backends.training.hf_folders import read_generation_config, write_hf_folder
from reinforge.backends.training.safe_dcp import SafeFileSystemReader, SafeLoadPlanner
from reinforge.core.errors import ReinforgeError

DCP_DIR = "dcp"


@contextmanager
def _single_process_quiet(ctx: ParallelContext | None) -> Iterator[None]:
    """DCP warns that it 'assumes a single process' when there is no group; that is the intent here."""
    with warnings.catch_warnings():
        if ctx is None or not ctx.distributed:
            warnings.filterwarnings("ignore", message=".*single process.*", category=UserWarning)
        yield


def save_checkpoint(
    directory: str | Path,
    *,
    causal_lm: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    step: int,
    ctx: ParallelContext,
    info: dict[str, Any],
) -> None:
    """Write model, optimizer, scheduler, step and RNG state (every rank calls this)."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    model_sd, optim_sd = get_state_dict(causal_lm, optimizer)
    with _single_process_quiet(ctx):
        dcp.save({"model": model_sd, "optimizer": optim_sd}, checkpoint_id=path / DCP_DIR, no_dist=not ctx.distributed)
    write_trainer_files(
        path, rank=ctx.rank, is_writer=ctx.is_writer, backend="dtensor", step=step, info=info,
        extra={"scheduler": scheduler.state_dict()},
    )
    ctx.barrier()


def load_checkpoint(
    directory: str | Path,
    *,
    causal_lm: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    ctx: ParallelContext,
) -> int:
    """Restore what `save_checkpoint` wrote (resharding if the world size changed); return the step count."""
    path = Path(directory)
    require_checkpoint(path, f"{DCP_DIR}/.metadata", backend="dtensor", saver="DTensorBackend.save")
    # Read (safely) before DCP does, so a refused .metadata is our clear error, not one wrapped in DCP's exception.
    SafeFileSystemReader(path / DCP_DIR).read_metadata()
    # get_state_dict gives a fresh optimizer zero-filled state, which DCP then fills in place.
    model_sd, optim_sd = get_state_dict(causal_lm, optimizer)
    with _single_process_quiet(ctx):
        dcp.load(
            {"model": model_sd, "optimizer": optim_sd},
            storage_reader=SafeFileSystemReader(path / DCP_DIR),
            planner=SafeLoadPlanner(),
            no_dist=not ctx.distributed,
        )
    set_state_dict(causal_lm, optimizer, model_state_dict=model_sd, optim_state_dict=optim_sd)
    state = read_trainer_files(path, rank=ctx.rank)
    scheduler.load_state_dict(state["scheduler"])
    ctx.barrier()
    return int(state["step"])


def full_state_dict(causal_lm: torch.nn.Module, ctx: ParallelContext) -> dict[str, torch.Tensor]:
    """Unsharded CPU tensors under Hugging Face names on rank 0 (every rank must call; others get {})."""
    if not ctx.distributed:
        return {name: tensor.detach().cpu() for name, tensor in causal_lm.state_dict().items()}
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(causal_lm, options=options)


def dcp_to_hf(
    dcp_dir: str | Path,
    base_model_dir: str | Path,
    out_dir: str | Path,
    *,
    tokenizer_dir: str | Path | None = None,
) -> Path:
    """Convert a saved checkpoint's weights to a Hugging Face folder, offline, in one process.

    `dcp_dir` is the folder `save` wrote (or its `dcp/` subfolder); `base_model_dir` supplies the
    architecture config and, unless `tokenizer_dir` is given, the tokenizer and generation config.
    """
    from transformers import AutoConfig
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    source = Path(dcp_dir)
    if (source / DCP_DIR / ".metadata").is_file():
        source = source / DCP_DIR
    if not (source / ".metadata").is_file():
        raise ReinforgeError(
            f"no torch.distributed.checkpoint in '{dcp_dir}' (no .metadata); pass a step_N/policy folder"
        )
    try:
        config = AutoConfig.from_pretrained(base_model_dir)
    except (OSError, ValueError) as exc:
        raise ReinforgeError(
            f"cannot read the model config from '{base_model_dir}' ({exc}); pass the base model folder"
        ) from None
    metadata = SafeFileSystemReader(str(source)).read_metadata()
    state_dict = {
        key.removeprefix("model."): torch.empty(tuple(entry.size), dtype=entry.properties.dtype)
        for key, entry in metadata.state_dict_metadata.items()
        if key.startswith("model.") and isinstance(entry, TensorStorageMetadata)
    }
    if not state_dict:
        raise ReinforgeError(f"the checkpoint in '{source}' holds no model weights (no 'model.' keys)")
    with _single_process_quiet(None):
        dcp.load({"model": state_dict}, storage_reader=SafeFileSystemReader(source), planner=SafeLoadPlanner(), no_dist=True)
    return write_hf_folder(
        state_dict, config, out_dir, generation_config=read_generation_config(base_model_dir),
        tokenizer_dir=tokenizer_dir or base_model_dir,
    )
