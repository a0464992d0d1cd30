"""The manifest of a checkpoint: every file it holds, with its size and SHA-256.

`CheckpointManager.save` writes `manifest.json` last, into the temporary folder, before the
rename that publishes the checkpoint. Nothing in a checkpoint is deserialised before
`verify_checkpoint` has found it complete and unchanged:

- a missing, truncated or altered file is damage (resume skips the checkpoint and falls back to
  an older intact one; `reinforge convert` refuses it);
- a file that the manifest does not list is damage too, so a file dropped into a checkpoint
  later (a crafted `trainer_state.pt`, an extra rank file) is never read;
- a checkpoint without a manifest was written by an older reinforge or by someone else; it is
  refused rather than loaded silently;
- a symbolic link, a device or pipe, or a file hard-linked from outside the folder is refused before
  anything is hashed (a shard linked to a file elsewhere would be read as the checkpoint's own, one
  linked to /dev/zero would be hashed forever), and hashing reads no more than the listed size.

The manifest proves integrity, not authorship: whoever can write the folder can also write a
matching manifest. That is why the readers behind it never unpickle arbitrary objects either
(trainer state is JSON + safetensors, torch files load with `weights_only=True`, and DCP's
pickled `.metadata` goes through an allow-list unpickler); see docs/reliability.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
_CHUNK = 1 << 20


def sha256_of(file: Path, limit: int | None = None) -> str:
    """SHA-256 of `file`, reading at most `limit` + 1 bytes when a limit is given (a file that grows, or a
    device, cannot make the hash run forever; one byte past the limit already changes the digest)."""
    digest = hashlib.sha256()
    left = None if limit is None else limit + 1
    with open(file, "rb") as handle:
        while left is None or left > 0:
            chunk = handle.read(_CHUNK if left is None else min(_CHUNK, left))
            if not chunk:
                break
            digest.update(chunk)
            if left is not None:
                left -= len(chunk)
    return digest.hexdigest()


def unsafe_entries(folder: Path) -> list[str]:
    """Entries of a checkpoint folder that are not plain files or folders of its own: symbolic links
    (a shard pointing at a file elsewhere, or at /dev/zero), devices and pipes, and files hard-linked
    from outside the folder (more links than the folder holds). A checkpoint never contains these."""
    problems: list[str] = []
    inodes: dict[tuple[int, int], list[str]] = {}
    for root, dirs, files in os.walk(folder):  # never follows links: a linked folder is reported, not entered
        dirs.sort()
        for name in sorted([*dirs, *files]):
            path = Path(root, name)
            rel = path.relative_to(folder).as_posix()
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                problems.append(f"{rel} is a symbolic link (to {os.readlink(path)}); a checkpoint holds only its own regular files")
            elif not stat.S_ISDIR(info.st_mode) and not stat.S_ISREG(info.st_mode):
                problems.append(f"{rel} is not a regular file (a device, pipe or socket)")
            elif stat.S_ISREG(info.st_mode) and info.st_nlink > 1:
                inodes.setdefault((info.st_dev, info.st_ino), []).append(rel)
    for (dev, ino), names in sorted(inodes.items(), key=lambda item: item[1]):
        links = os.stat(Path(folder, names[0])).st_nlink
        if links > len(names):
            problems.append(
                f"{names[0]} is hard-linked from outside the checkpoint ({links} links, {len(names)} inside it); "
                "copy the checkpoint with its own files (cp -r, not cp -al)"
            )
    return problems


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
    problems = unsafe_entries(root)
    if problems:  # checked before anything is opened: a link or a device is never read, whatever the manifest says
        return problems
    present = set(_files_under(root))
    for rel, (size, digest) in sorted(expected.items()):
        file = root / rel
        if rel not in present:
            problems.append(f"{rel} is missing")
        elif (actual := file.stat().st_size) != size:
            problems.append(f"{rel} has {actual} bytes, the manifest says {size} (truncated or replaced)")
        elif sha256_of(file, limit=size) != digest:
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
