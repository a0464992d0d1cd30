"""The identity of a model folder's weights, for the run fingerprint.

Two folders of one architecture (a base model and its fine-tune, two seeds of one recipe) share
`config.json` and the tokenizer files byte for byte; only the weights tell them apart, and a
resume that mixes them up continues another model's training without a word. So the fingerprint
holds a digest of every weights file:

- a safetensors file: its size, its whole header (names, dtypes, shapes, offsets) and a sample of
  its data: 64 blocks of 64 KiB spread evenly over the tensors (the whole file when it is at most
  16 MiB). Two trainings of one architecture differ in every block, so the sample tells them
  apart; reading 4 MiB keeps this quick for a 100 GB model;
- any other weights file (`pytorch_model*.bin`): its size and the same kind of sample.

The digest is computed once per model folder and kept in `weights_fingerprint_cache.json` in the
checkpoint folder, keyed by each file's size and modification time, so later saves and resumes
reuse it, and a file rewritten in place is hashed again.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

CACHE_FILE = "weights_fingerprint_cache.json"
WHOLE_FILE_BYTES = 16 << 20
SAMPLE_BLOCKS = 64
BLOCK_BYTES = 64 << 10
_PATTERNS = ("*.safetensors", "pytorch_model*.bin")


def weight_files(folder: Path) -> list[Path]:
    """The weights files of a model folder, sorted by name."""
    found = {p for pattern in _PATTERNS for p in folder.glob(pattern) if p.is_file()}
    return sorted(found, key=lambda p: p.name)


def weights_digest(folder: str | os.PathLike[str] | None, cache_dir: str | os.PathLike[str] | None = None) -> str | None:
    """"sha256:..." over the folder's weights files (see the module docstring); None when it has none
    (a hub name, or a folder without weights)."""
    if folder is None:
        return None
    root = Path(folder).expanduser()
    if not root.is_dir():
        return None
    files = weight_files(root)
    if not files:
        return None
    stamp = {f.name: [f.stat().st_size, f.stat().st_mtime_ns] for f in files}
    key = str(root.resolve())
    cache = _read_cache(cache_dir)
    entry = cache.get(key)
    if isinstance(entry, dict) and entry.get("files") == stamp and isinstance(entry.get("digest"), str):
        return entry["digest"]
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode() + b"\0" + _file_digest(file).encode() + b"\n")
    value = f"sha256:{digest.hexdigest()[:16]}"
    if cache_dir is not None:
        cache[key] = {"files": stamp, "digest": value}
        _write_cache(cache_dir, cache)
    return value


def _file_digest(file: Path) -> str:
    size = file.stat().st_size
    digest = hashlib.sha256(str(size).encode() + b"\0")
    with file.open("rb") as handle:
        if size <= WHOLE_FILE_BYTES:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
            return digest.hexdigest()
        start = 0
        if file.suffix == ".safetensors":
            (length,) = struct.unpack("<Q", handle.read(8))
            start = 8 + min(length, size - 8)
            handle.seek(0)
            digest.update(handle.read(start))  # the whole header: every tensor's name, dtype, shape, offsets
        span = max(size - start - BLOCK_BYTES, 0)
        for i in range(SAMPLE_BLOCKS):
            handle.seek(start + span * i // (SAMPLE_BLOCKS - 1))
            digest.update(handle.read(BLOCK_BYTES))
    return digest.hexdigest()


def _read_cache(cache_dir: str | os.PathLike[str] | None) -> dict[str, object]:
    if cache_dir is None:
        return {}
    try:
        data = json.loads((Path(cache_dir) / CACHE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # absent or damaged: computed again
    return data if isinstance(data, dict) else {}


def _write_cache(cache_dir: str | os.PathLike[str], cache: dict[str, object]) -> None:
    path = Path(cache_dir) / CACHE_FILE
    tmp = path.with_name(f".{CACHE_FILE}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(cache, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)  # only a cache: the next save computes it again
