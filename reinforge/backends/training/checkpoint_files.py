"""The files around a training backend's weights in its checkpoint folder (shared by dtensor and megatron).

Each backend stores model + optimizer its own way (DCP, Megatron's dist_checkpointing) in a
subfolder; around it, both write the same files:

    trainer_state.pt        {"format", "step", ...} (rank 0; the backend may add e.g. its scheduler)
    rng_rank<r>.pt          torch CPU (and CUDA) RNG state of rank r
    reinforge_backend.json  what wrote it (backend, model, precision, parallel sizes, step)

The `.pt` files load with `weights_only=True`: no arbitrary unpickling.
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from reinforge.core.errors import ReinforgeError

STATE_FILE = "trainer_state.pt"
META_FILE = "reinforge_backend.json"
FORMAT_VERSION = 1


def require_checkpoint(path: Path, marker: str, *, backend: str, saver: str) -> None:
    """Fail clearly unless `path` holds `marker` (the weights' index file) and the trainer state."""
    if not (path / marker).is_file() or not (path / STATE_FILE).is_file():
        raise ReinforgeError(
            f"'{path}' is not a {backend} checkpoint (expected {marker} and {STATE_FILE}); "
            f"pass the policy/ folder that {saver} wrote"
        )


def write_trainer_files(
    path: Path, *, rank: int, is_writer: bool, backend: str, step: int, info: dict[str, Any], extra: dict[str, Any] | None = None
) -> None:
    """This rank's RNG state; on the writer also the trainer state (+ `extra`) and the manifest."""
    torch.save(_rng_state(), path / f"rng_rank{rank}.pt")
    if is_writer:
        torch.save({"format": FORMAT_VERSION, "step": step, **(extra or {})}, path / STATE_FILE)
        meta = {"format": FORMAT_VERSION, "backend": backend, "step": step, **info}
        (path / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def read_trainer_files(path: Path, *, rank: int) -> dict[str, Any]:
    """Restore this rank's RNG state (when saved: not with more ranks than saved) and return the trainer state."""
    state = load_pt(path / STATE_FILE)
    rng_file = path / f"rng_rank{rank}.pt"
    if rng_file.is_file():  # absent when loading with more ranks than saved: keep this rank's seed
        rng = load_pt(rng_file)
        try:
            _set_rng_state(rng)
        except (KeyError, TypeError, RuntimeError) as exc:
            raise _unreadable(rng_file, f"it does not hold an RNG state ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict):
        raise _unreadable(path / STATE_FILE, f"it holds a {type(state).__name__}, not the trainer state")
    return state


def load_pt(file: Path) -> Any:
    """`torch.load(file, weights_only=True)`, with a refusal (a crafted or foreign pickle) or damage reported
    as a ReinforgeError naming the file and the reason, not torch's traceback."""
    try:
        return torch.load(file, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        what = f"it would call {found.group(1)}" if found else str(exc).strip().splitlines()[0][:200]
        raise _unreadable(file, f"the safe loader refused it: {what}, and reinforge never unpickles anything but tensors and plain data") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise _unreadable(file, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else 'unreadable'}") from None


def _unreadable(file: Path, reason: str) -> ReinforgeError:
    return ReinforgeError(
        f"checkpoint file {file} cannot be loaded: {reason}. The checkpoint is damaged or was altered; nothing in it "
        "ran. Resume from another step_N folder (delete this one) or pass checkpointing.resume=false to start over"
    )


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
