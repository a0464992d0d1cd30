"""The manifest of a checkpoint: every file it holds, with its size and SHA-256.

`CheckpointManager.save` writes `manifest.json` last, into the temporary folder, before the
rename that publishes the checkpoint. Nothing in a checkpoint is deserialised before
`verify_checkpoint` has found it complete and unchanged:

- a missing, truncated or altered file is damage (resume skips the checkpoint and falls back to
  an older intact one; `reinforge convert` refuses it);
- a file that the manifest does not list is damage too, so a file dropped into a checkpoint
  later (a crafted `trainer_state.pt`, an extra rank file) is never read;
- a checkpoint without a manifest was written by an older reinforge or by someone else; it is
  refused rather than loaded silently.

The manifest proves integrity, not authorship: whoever can write the folder can also write a
matching manifest. That is why the readers behind it never unpickle arbitrary objects either
(trainer state is JSON + safetensors, torch files load with `weights_only=True`, and DCP's
pickled `.metadata` goes through an allow-list unpickler); see docs/reliability.md.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
_CHUNK = 1 << 20


def sha256_of(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _files_under(folder: Path) -> list[str]:
    """Relative POSIX paths of every regular file under `folder` except the manifest, sorted."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in files:
            rel = Path(root, name).relative_to(folder).as_posix()
            if rel != MANIFEST:
                found.append(rel)
    return sorted(found)


def write_manifest(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """Hash every file under `folder` and write `folder/manifest.json`; returns the manifest."""
    root = Path(folder)
    files = {rel: {"size": (root / rel).stat().st_size, "sha256": sha256_of(root / rel)} for rel in _files_under(root)}
    manifest = {"format": MANIFEST_FORMAT, "files": files}
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


def verify_checkpoint(folder: str | os.PathLike[str]) -> list[str]:
    """What is wrong with the checkpoint folder `folder` (an empty list: complete and unchanged).

    Sizes are compared before hashes, so a truncated shard is named without reading it whole.
    """
    root = Path(folder)
    manifest_file = root / MANIFEST
    if not manifest_file.is_file():
        return [f"no {MANIFEST} (written before reinforge checkpoints had manifests, or not by reinforge)"]
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
        files = manifest["files"]
        if manifest.get("format") != MANIFEST_FORMAT or not isinstance(files, dict):
            raise ValueError(f"unknown manifest format {manifest.get('format')!r}")
        expected = {str(rel): (int(entry["size"]), str(entry["sha256"])) for rel, entry in files.items()}
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        return [f"{MANIFEST} is unreadable ({type(exc).__name__}: {exc})"]
    problems = []
    present = set(_files_under(root))
    for rel, (size, digest) in sorted(expected.items()):
        file = root / rel
        if rel not in present:
            problems.append(f"{rel} is missing")
        elif (actual := file.stat().st_size) != size:
            problems.append(f"{rel} has {actual} bytes, the manifest says {size} (truncated or replaced)")
        elif sha256_of(file) != digest:
            problems.append(f"{rel} does not match its SHA-256 in the manifest (corrupted or altered)")
    for rel in sorted(present - set(expected)):
        problems.append(f"{rel} is not listed in the manifest (added after the save; it is never read)")
    return problems


def find_manifest_root(path: str | os.PathLike[str]) -> Path | None:
    """The checkpoint folder holding `path` (itself, or its parent as for `step_N/policy`), or None."""
    start = Path(path).resolve()
    for candidate in (start, start.parent):
        if (candidate / MANIFEST).is_file():
            return candidate
    return None
