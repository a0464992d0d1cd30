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

It is computed once per model folder: the training loop keeps it for the run, and each checkpoint
records it beside the folder's *stamp* (every weights file's name, size and modification time),
so a resume whose model folder still has that stamp reuses the recorded digest instead of reading
the weights again; a file rewritten in place changes its stamp and is hashed again.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

WHOLE_FILE_BYTES = 16 << 20
SAMPLE_BLOCKS = 64
BLOCK_BYTES = 64 << 10
_PATTERNS = ("*.safetensors", "pytorch_model*.bin")


@attrs.frozen
class WeightsRecord:
    """A model folder's weights digest and the stamp it was computed for (both plain data, kept in training_info)."""

    digest: str | None
    stamp: dict[str, list[int]] | None

    def as_dict(self) -> dict[str, Any]:
        return {"digest": self.digest, "stamp": self.stamp}


def weight_files(folder: Path) -> list[Path]:
    """The weights files of a model folder, sorted by name."""
    found = {p for pattern in _PATTERNS for p in folder.glob(pattern) if p.is_file()}
    return sorted(found, key=lambda p: p.name)


def weights_stamp(folder: str | os.PathLike[str] | None) -> dict[str, list[int]] | None:
    """{file name: [size, mtime_ns]} of the folder's weights files; None for a hub name or a folder without weights."""
    if folder is None or not Path(folder).expanduser().is_dir():
        return None
    files = weight_files(Path(folder).expanduser())
    return {f.name: [f.stat().st_size, f.stat().st_mtime_ns] for f in files} or None


def weights_record(folder: str | os.PathLike[str] | None, known: Mapping[str, Any] | None = None) -> WeightsRecord:
    """The digest of the folder's weights (see the module docstring); `known` is a record from a checkpoint,
    reused when the folder's stamp is the one it was computed for."""
    stamp = weights_stamp(folder)
    if stamp is None:
        return WeightsRecord(None, None)
    if known and known.get("stamp") == stamp and isinstance(known.get("digest"), str):
        return WeightsRecord(str(known["digest"]), stamp)
    return WeightsRecord(weights_digest(folder), stamp)


def weights_digest(folder: str | os.PathLike[str] | None) -> str | None:
    """"sha256:..." over the folder's weights files, read now; None when it has none."""
    if folder is None or not Path(folder).expanduser().is_dir():
        return None
    files = weight_files(Path(folder).expanduser())
    if not files:
        return None
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode() + b"\0" + _file_digest(file).encode() + b"\n")
    return f"sha256:{digest.hexdigest()[:16]}"


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
