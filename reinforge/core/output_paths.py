"""Checks that a place a command will write to can be written, made *before* the work that fills it.

An export or an evaluation that runs for minutes and then fails to write its result has thrown
that work away. Permissions alone cannot tell (root ignores them; a read-only mount or a path
under a file does not), so the check tries: it creates the folder (and removes what it created)
and writes a probe file in it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from reinforge.core.errors import ReinforgeError


def check_output_folder(folder: str | os.PathLike[str], setting: str, *, named: str | os.PathLike[str] | None = None) -> None:
    """Raise a ReinforgeError naming `setting` unless files can be created in `folder` (made if missing);
    `named` is what the user gave when it is a file in `folder`."""
    path = Path(folder).expanduser()
    shown = folder if named is None else named
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        where = "is an existing file" if named is None and existing == path else f"is under '{existing}', which is a file, not a folder"
        raise ReinforgeError(f"{setting} '{shown}' {where}; name a {'folder' if named is None else 'path'} you can write to")
    created = None if path.exists() else _first_missing(path)
    probe = path / f".reinforge_write_test_{os.getpid()}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise ReinforgeError(
            f"{setting} '{shown}' cannot be written: {exc.strerror or exc} ({exc.filename or path}); name a folder you "
            "can write to (or fix its permissions). Nothing was done yet"
        ) from None
    finally:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)  # leave no empty folders behind a check


def check_output_file(file: str | os.PathLike[str], setting: str) -> None:
    """Raise a ReinforgeError naming `setting` unless `file` can be written (its folder made if missing)."""
    path = Path(file).expanduser()
    if path.is_dir():
        raise ReinforgeError(f"{setting} '{file}' is a directory; name a file to write")
    if path.exists() and not path.is_file():
        raise ReinforgeError(f"{setting} '{file}' is not a regular file; name a file to write")
    check_output_folder(path.parent, setting, named=file)


def _first_missing(path: Path) -> Path:
    """The outermost folder of `path` that does not exist yet (what a mkdir -p would create first)."""
    first = path
    while not first.parent.exists() and first.parent != first.parent.parent:
        first = first.parent
    return first
