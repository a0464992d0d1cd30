"""Checkpoints with torch.distributed.checkpoint (DCP), and Hugging Face folders from live or saved weights.

Layout of `save(directory)`:

    directory/
      dcp/                  model + optimizer state (DCP: .metadata, __<rank>_0.distcp); keys
                            "model.<hf name>" and "optimizer.state.<hf name>.<exp_avg|...>"; with LoRA
                            only the adapters ("model.<layer>.lora_A", ".lora_B") and their state
      trainer_state.pt      step count and LR-scheduler state (written by rank 0)
      rng_rank<r>.pt        torch CPU (and CUDA) RNG state of rank r
      reinforge_backend.json  what wrote it (backend, model, precision, world and TP size, step)

DCP writes every rank's shards in parallel and reshards on load, so a checkpoint saved with N
ranks loads with M. In one process it runs with `no_dist=True`: no process group is needed.
`dcp_to_hf` reads only the "model." keys, offline, in one process (`reinforge convert`); an adapter
checkpoint is merged into the base model's weights (or written as a PEFT adapter folder).

Loading never unpickles arbitrary objects: DCP's `.metadata` and non-tensor entries go through
`safe_dcp` (an allow-list unpickler and `weights_only=True`), and the `.pt` files load with
`weights_only=True`. The caller checks the checkpoint's manifest before any of this.
"""

from __future__ import annotations

import json
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

from reinforge.backends.training.checkpoint_files import META_FILE, read_trainer_files, require_checkpoint, write_trainer_files
from reinforge.backends.training.dtensor.distributed import ParallelContext
from reinforge.backends.training.dtensor.lora import is_adapter_name, merge_state_dict, peft_adapter_files
from reinforge.backends.training.hf_folders import read_generation_config, write_hf_folder
from reinforge.backends.training.safe_dcp import SafeFileSystemReader, SafeLoadPlanner
from reinforge.core.errors import ReinforgeError
from reinforge.core.lora_config import LoRAConfig

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
    trainable_only: bool = False,
) -> None:
    """Write model, optimizer, scheduler, step and RNG state (every rank calls this).

    `trainable_only` (LoRA): the model part holds only parameters that require gradients, not the frozen base.
    """
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    model_sd, optim_sd = get_state_dict(causal_lm, optimizer, options=_options(trainable_only))
    model_sd = _trainable(model_sd, causal_lm) if trainable_only else model_sd
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
    trainable_only: bool = False,
) -> int:
    """Restore what `save_checkpoint` wrote (resharding if the world size changed); return the step count."""
    path = Path(directory)
    require_checkpoint(path, f"{DCP_DIR}/.metadata", backend="dtensor", saver="DTensorBackend.save")
    # Read (safely) before DCP does, so a refused .metadata is our clear error, not one wrapped in DCP's exception.
    SafeFileSystemReader(path / DCP_DIR).read_metadata()
    # get_state_dict gives a fresh optimizer zero-filled state, which DCP then fills in place.
    options = _options(trainable_only)
    model_sd, optim_sd = get_state_dict(causal_lm, optimizer, options=options)
    model_sd = _trainable(model_sd, causal_lm) if trainable_only else model_sd
    with _single_process_quiet(ctx):
        dcp.load(
            {"model": model_sd, "optimizer": optim_sd},
            storage_reader=SafeFileSystemReader(path / DCP_DIR),
            planner=SafeLoadPlanner(),
            no_dist=not ctx.distributed,
        )
    set_state_dict(causal_lm, optimizer, model_state_dict=model_sd, optim_state_dict=optim_sd, options=options)
    state = read_trainer_files(path, rank=ctx.rank)
    scheduler.load_state_dict(state["scheduler"])
    ctx.barrier()
    return int(state["step"])


def _options(trainable_only: bool) -> StateDictOptions | None:
    # Loading the adapters alone is not strict: the frozen base is absent from the checkpoint by design.
    return StateDictOptions(ignore_frozen_params=True, strict=False) if trainable_only else None


def _trainable(model_sd: dict[str, Any], causal_lm: torch.nn.Module) -> dict[str, Any]:
    """Only the parameters that train: `ignore_frozen_params` keeps a frozen tied alias (lm_head.weight)."""
    names = {name for name, param in causal_lm.named_parameters() if param.requires_grad}
    return {name: value for name, value in model_sd.items() if name in names}


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
    adapter: bool = False,
) -> Path:
    """Convert a saved checkpoint's weights to a Hugging Face folder, offline, in one process.

    `dcp_dir` is the folder `save` wrote (or its `dcp/` subfolder); `base_model_dir` supplies the
    architecture config and, unless `tokenizer_dir` is given, the tokenizer and generation config.
    A LoRA checkpoint holds only adapters: they are merged into `base_model_dir`'s weights
    (`W + alpha/dim * B A`), or, with `adapter=True`, written as a PEFT adapter folder
    (`adapter_config.json` + `adapter_model.safetensors`) for that base.
    """
    from transformers import AutoConfig

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
    state_dict = _read_model_weights(source)
    adapters = {name: tensor for name, tensor in state_dict.items() if is_adapter_name(name)}
    if adapter and not adapters:
        raise ReinforgeError(
            f"the checkpoint in '{source}' is a full fine-tune (no LoRA adapters), so there is no adapter folder to "
            "write; convert it without --adapter to get the Hugging Face model"
        )
    if adapters:
        lora = _saved_lora(source)
        if adapter:
            return _write_peft_folder(adapters, lora, str(base_model_dir), Path(out_dir))
        state_dict = _merge_into_base(adapters, lora, base_model_dir)
    return write_hf_folder(
        state_dict, config, out_dir, generation_config=read_generation_config(base_model_dir),
        tokenizer_dir=tokenizer_dir or base_model_dir,
    )


def _read_model_weights(source: Path) -> dict[str, torch.Tensor]:
    """Every "model." tensor of the DCP checkpoint in `source`, under its Hugging Face (or adapter) name."""
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

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
    return state_dict


def _saved_lora(source: Path) -> LoRAConfig:
    """The LoRA settings the checkpoint's manifest (reinforge_backend.json beside dcp/) recorded."""
    meta_file = source.parent / META_FILE
    saved = json.loads(meta_file.read_text(encoding="utf-8")).get("lora") if meta_file.is_file() else None
    if not saved:
        raise ReinforgeError(
            f"the checkpoint in '{source}' holds LoRA adapters but {meta_file} does not record their rank and alpha; "
            "pass the policy/ folder that DTensorBackend.save wrote"
        )
    return LoRAConfig(**saved)


def _merge_into_base(adapters: dict[str, torch.Tensor], lora: LoRAConfig, base_model_dir: str | Path) -> dict[str, torch.Tensor]:
    """The base model's state dict with each adapted weight replaced by `W + scale * B A`."""
    from transformers import AutoModelForCausalLM

    dtype = next(iter(adapters.values())).dtype
    base = AutoModelForCausalLM.from_pretrained(base_model_dir, dtype=dtype).state_dict()
    for name, tensor in adapters.items():
        weight = base.get(name.rsplit(".", 1)[0] + ".weight")
        axis = 1 if name.endswith(".lora_A") else 0  # A [r, in] shares W's input width, B [out, r] its output rows
        if weight is None or weight.shape[axis] != tensor.shape[axis]:
            raise ReinforgeError(
                f"the adapter {name} {tuple(tensor.shape)} does not fit the base model in '{base_model_dir}' "
                f"({'no such layer' if weight is None else f'its weight is {tuple(weight.shape)}'}); pass the model the "
                "run trained (its policy.model_name)"
            )
    return merge_state_dict({**base, **adapters}, lora.scale)


def _write_peft_folder(adapters: dict[str, torch.Tensor], lora: LoRAConfig, base_model: str, out: Path) -> Path:
    from safetensors.torch import save_file

    adapter_config, tensors = peft_adapter_files(adapters, lora, base_model)
    out.mkdir(parents=True, exist_ok=True)
    (out / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2) + "\n", encoding="utf-8")
    save_file(tensors, str(out / "adapter_model.safetensors"), metadata={"format": "pt"})
    return out
