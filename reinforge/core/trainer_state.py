"""The trainer's own part of a checkpoint, stored without pickle, and the run fingerprint.

    trainer_state.json        {"format": 2, "algorithm": {...}, "python_rng": [version, [ints], gauss_next]}
    trainer_rng.safetensors   {"torch_cpu": uint8 tensor}  (torch.get_rng_state())

Why not `torch.save`: a pickle runs code when it is loaded, and a checkpoint folder is often on
shared storage or downloaded. Python's `random.getstate()` is a tuple of ints and torch's RNG
state is a byte tensor, so JSON and safetensors hold them exactly.

The fingerprint names what a checkpoint belongs to (algorithm, model config and weights, tokenizer,
data and the settings that change the math); resume refuses a checkpoint whose fingerprint differs
unless `checkpointing.resume=force`.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from reinforge.core.errors import ReinforgeError
from reinforge.core.weights_fingerprint import weights_digest

STATE_JSON = "trainer_state.json"
RNG_FILE = "trainer_rng.safetensors"
STATE_FORMAT = 2


def write_trainer_state(folder: Path, algorithm_state: dict[str, Any]) -> None:
    """Write the algorithm's state and the Python and torch RNG states into `folder`."""
    version, internal, gauss_next = random.getstate()
    state = {"format": STATE_FORMAT, "algorithm": algorithm_state, "python_rng": [version, list(internal), gauss_next]}
    # allow_nan=False: the algorithm's state must be plain JSON; a programming error if not.
    (folder / STATE_JSON).write_text(json.dumps(state, allow_nan=False) + "\n", encoding="utf-8")
    save_file({"torch_cpu": torch.get_rng_state()}, str(folder / RNG_FILE))


def read_trainer_state(folder: Path) -> dict[str, Any]:
    """The algorithm state of `folder`; restores the RNG states as a side effect (call after the manifest check)."""
    try:
        state = json.loads((folder / STATE_JSON).read_text(encoding="utf-8"))
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"unknown trainer state format {state.get('format')!r}")
        version, internal, gauss_next = state["python_rng"]
        python_rng = (int(version), tuple(int(x) for x in internal), None if gauss_next is None else float(gauss_next))
        torch_rng = load_file(str(folder / RNG_FILE))["torch_cpu"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ReinforgeError(
            f"the trainer state in {folder} cannot be read ({type(exc).__name__}: {exc}); the checkpoint is damaged: "
            "delete that step_N folder to resume from the one before, or pass checkpointing.resume=false to start over"
        ) from None
    random.setstate(python_rng)
    torch.set_rng_state(torch_rng)
    return dict(state["algorithm"])


# --------------------------------------------------------------------------- fingerprint
# Sections of an algorithm's settings that only schedule the run (how long, how often to
# validate or log); everything else in the algorithm section changes what is learned.
_SCHEDULE_KEYS = ("max_num_steps", "max_num_epochs", "val_period", "val_at_start", "val_at_end", "max_val_samples")


def run_fingerprint(config: dict[str, Any], *, weights: str | None = None, section_name: str | None = None) -> dict[str, Any]:
    """What a checkpoint belongs to, from the run's config as plain data (`to_dict(config)`).

    `weights` is the digest of the model folder's weights (`weights_fingerprint`), when the caller
    already has it (the training loop computes it once per run); None reads the folder now.
    `section_name` is the section holding the algorithm's settings when it is not named after the
    algorithm (a variant registered with `run_config="grpo"` keeps its settings in `grpo:`)."""
    algorithm = config.get("algorithm")
    policy = config.get("policy") or {}
    data = config.get("data") or {}
    settings = config.get(section_name or algorithm) or {}
    section = {k: v for k, v in settings.items() if k not in _SCHEDULE_KEYS and not k.startswith("val_")}
    model = policy.get("model_name")
    tokenizer = policy.get("tokenizer_name") or model
    return {
        "algorithm": algorithm,
        "model": _folder_identity(model, ("config.json",)),
        "weights": weights if weights is not None else weights_digest(model),
        "tokenizer": _folder_identity(tokenizer, ("tokenizer.json", "tokenizer_config.json", "vocab.json")),
        "dataset": {
            k: data.get(k)
            for k in ("dataset", "dataset_cfg", "prompt_file", "system_prompt", "example_turns", "max_input_seq_length")
        },
        "algorithm_settings": section,
        "loss_fn": config.get("loss_fn"),
        "precision": policy.get("precision"),
        "train_global_batch_size": policy.get("train_global_batch_size"),
        "optimizer": policy.get("optimizer"),
        # Off is recorded as {"enabled": false}, so a switch to or from adapters differs at lora.enabled.
        "lora": (policy.get("lora") or {}) if (policy.get("lora") or {}).get("enabled") else {"enabled": False},
    }


def _folder_identity(name: str | None, files: tuple[str, ...]) -> str | None:
    """A local model folder is known by the hash of its config files (so moving it is fine); a hub name by itself."""
    if name is None:
        return None
    folder = Path(name).expanduser()
    present = [folder / f for f in files if (folder / f).is_file()]
    if not present:
        return name
    digest = hashlib.sha256()
    for file in present:
        digest.update(file.name.encode() + b"\0" + file.read_bytes())
    return f"sha256:{digest.hexdigest()[:16]}"


def fingerprint_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ, with both values, e.g.
    'algorithm_settings.normalize_rewards: true (checkpoint) vs false (this run)'."""
    old, new = _flatten(saved), _flatten(current)
    differences = []
    # Keys the checkpoint did not record (a fingerprint field added since it was written) cannot differ.
    for key in sorted(old):
        if _canonical(old.get(key)) != _canonical(new.get(key)):
            differences.append(f"{key}: {_short(old.get(key))} (checkpoint) vs {_short(new.get(key))} (this run)")
    return differences


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key, inner in value.items():
            flat.update(_flatten(inner, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): value}


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _short(value: Any) -> str:
    text = _canonical(value)
    return text if len(text) <= 120 else text[:117] + "..."
