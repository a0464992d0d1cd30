"""Checks of a local model folder before transformers loads it, so that a wrong folder is named as what it is.

Why: transformers reports a training checkpoint passed as a model folder as a missing
`sentencepiece`, a folder without tokenizer files as a missing chat template, and a truncated or
corrupt `.safetensors` file as a Rust deserialisation traceback. Reading the folder listing and
each safetensors header (a few KB) tells these apart before anything heavy is loaded.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

from reinforge.core.errors import ReinforgeError

# Any one of these makes a folder loadable by AutoTokenizer.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model", "tokenizer.tiktoken")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
# safetensors refuses headers above 100 MB; a larger length field means a damaged file.
_MAX_HEADER_BYTES = 100_000_000


def looks_like_checkpoint(folder: Path) -> bool:
    """A reinforge training checkpoint (a step_N/ folder or its policy/ folder), not a Hugging Face folder."""
    if (folder / "policy").is_dir() and (folder / "training_info.json").exists():
        return True
    if (folder / ".metadata").exists() or any(folder.glob("*.distcp")):
        return True
    # the backend's own subfolder: dtensor writes dcp/, megatron mcore/ (torch DCP or megatron's metadata.json)
    return folder.is_dir() and any(
        (sub / ".metadata").exists() or (sub / "metadata.json").exists() for sub in folder.iterdir() if sub.is_dir()
    )


def looks_like_hf_folder(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(p.suffix in WEIGHT_SUFFIXES for p in folder.iterdir())


def check_model_folder(name: str, *, setting: str, tokenizer_folder: str | None = None) -> None:
    """Raise a ReinforgeError saying what `name` is if it is a local folder transformers would fail on.

    Hub names (no such local path) pass through; `tokenizer_folder` is where the tokenizer is read
    from when it is not `name` itself (policy.tokenizer_name).
    """
    folder = Path(name).expanduser()
    if not folder.is_dir():
        if folder.is_file():
            raise ReinforgeError(f"{setting} '{name}' is a file; it must be a Hugging Face model folder (config.json, weights, tokenizer)")
        return
    if looks_like_checkpoint(folder):
        step = folder if (folder / "policy").is_dir() else folder.parent
        raise ReinforgeError(
            f"{setting} '{name}' is a reinforge training checkpoint, not a Hugging Face model folder; export it first "
            f"with `reinforge convert --dcp-ckpt-path {step / 'policy'} --hf-ckpt-path {step / 'hf'}` and set "
            f"{setting} to the folder it writes"
        )
    config = folder / "config.json"
    if not config.is_file():
        raise ReinforgeError(
            f"{setting} '{name}' has no config.json, so it is not a Hugging Face model folder; point it at the "
            "folder holding config.json, the weights and the tokenizer (or a hub name)"
        )
    _check_weights(folder, setting)
    tokenizer = Path(tokenizer_folder).expanduser() if tokenizer_folder else folder
    for json_file in sorted({*folder.glob("*.json"), *(tokenizer.glob("*.json") if tokenizer.is_dir() else ())}):
        _check_json(json_file, setting)  # config, tokenizer, generation config: transformers' errors are tracebacks
    if tokenizer.is_dir() and not any((tokenizer / f).is_file() for f in TOKENIZER_FILES):
        tokenizer_key = tokenizer_setting(setting)
        where = f"{tokenizer_key} '{tokenizer_folder}'" if tokenizer_folder else f"{setting} '{name}'"
        raise ReinforgeError(
            f"{where} has no tokenizer files (none of {', '.join(TOKENIZER_FILES)}); copy the tokenizer of the model "
            f"into that folder, or set {tokenizer_key} to a folder that has one"
        )


def tokenizer_setting(setting: str) -> str:
    """The tokenizer key beside a model key: policy.model_name -> policy.tokenizer_name, generation.model_name ->
    generation.tokenizer_name (eval's), so each message names the key of the command that was run."""
    return setting.rsplit(".", 1)[0] + ".tokenizer_name" if "." in setting else "policy.tokenizer_name"


def _check_json(path: Path, setting: str) -> None:
    try:
        json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReinforgeError(f"{path} (from {setting}) is not valid JSON ({exc}); restore it from the original model") from None


def _check_weights(folder: Path, setting: str) -> None:
    files = sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file())
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        _check_json(index, setting)
        shards = set(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}).values())
        missing = sorted(s for s in shards if not (folder / s).is_file())
        if missing:
            raise ReinforgeError(
                f"{setting} '{folder}' is incomplete: model.safetensors.index.json names {', '.join(missing)}, which "
                "is not in the folder; copy or download the missing shard(s)"
            )
    if not files:
        raise ReinforgeError(
            f"{setting} '{folder}' has no weights (no *.safetensors or pytorch_model.bin); it holds "
            f"{', '.join(sorted(p.name for p in folder.iterdir())[:8]) or 'nothing'}"
        )
    for path in files:
        if path.suffix == ".safetensors":
            problem = safetensors_problem(path)
            if problem:
                raise ReinforgeError(
                    f"weights file {path} (from {setting}) is damaged: {problem}; copy or download it again "
                    "(or re-export the folder with `reinforge convert`)"
                )


def safetensors_problem(path: Path) -> str | None:
    """Why `path` is not a readable safetensors file (None when its header and size agree)."""
    size = path.stat().st_size
    if size == 0:
        return "the file is empty"
    if size < 8:
        return f"the file has {size} bytes, fewer than the 8-byte header length"
    with path.open("rb") as handle:
        (header_len,) = struct.unpack("<Q", handle.read(8))
        if header_len > _MAX_HEADER_BYTES or 8 + header_len > size:
            return f"its header claims {header_len:,} bytes but the file has {size:,} (truncated or not safetensors)"
        raw = handle.read(header_len)
    try:
        header = json.loads(raw.decode("utf-8"))
        ends = [int(entry["data_offsets"][1]) for key, entry in header.items() if key != "__metadata__"]
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError, IndexError):
        return "its header is not valid safetensors JSON (the file is corrupt or not safetensors)"
    described, held = max(ends, default=0), size - 8 - header_len
    if held < described:
        return f"it is truncated: its header describes {described:,} bytes of tensor data but the file holds {held:,}"
    if held > described:
        return f"it holds {held - described:,} bytes more than its header describes (corrupt or two files joined)"
    return None


def refused_weights(name: str, exc: BaseException, *, setting: str) -> ReinforgeError:
    """The error for a pickled weights file (`pytorch_model*.bin`) that torch's safe loader refused while
    transformers loaded `name`: which file(s) and why, instead of torch's traceback."""
    folder = Path(name).expanduser()
    pickled = sorted(str(p) for p in folder.glob("*") if p.suffix in (".bin", ".pt", ".pth") and p.is_file()) if folder.is_dir() else []
    found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
    reason = f"it would call {found.group(1)}" if found else str(exc).strip().splitlines()[0][:200]
    where = ", ".join(pickled) or f"the weights of {name}"
    return ReinforgeError(
        f"weights file {where} (from {setting}) was refused by the safe loader: {reason}. A pickled weights file may "
        "hold only tensors and plain data; this one holds code, so nothing in it was run. Use the model's safetensors "
        "weights (model.safetensors), or re-download it from its source"
    )
