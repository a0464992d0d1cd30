"""The one error type a user can cause, and how it is shown.

Anything a user can fix (a bad config value, an unknown plugin name, a missing model folder)
raises `ReinforgeError`: the CLI prints its message as one paragraph and exits non-zero,
without a traceback. Programming errors are left to crash loudly.
"""

from __future__ import annotations

import os
from pathlib import Path


class ReinforgeError(Exception):
    """An error the user can act on; its message says what, where, and what to do."""


class ConfigError(ReinforgeError):
    """A configuration could not be loaded; `errors` holds every `message @ path` line."""

    def __init__(self, errors: list[str], source: str | None = None) -> None:
        self.errors = list(errors)
        self.source = source
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  - {e}" for e in self.errors)
        super().__init__(f"{len(self.errors)} configuration error(s){where}:\n{lines}")


class PluginError(ReinforgeError):
    """A plugin could not be found, loaded or resolved."""


def read_user_text(path: str | os.PathLike[str], what: str) -> str:
    """The UTF-8 text of a file the user named (`what` says which setting named it); every way reading
    it can fail is a ReinforgeError saying so."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise ReinforgeError(f"{what} '{path}' is a directory; name a text file")
    if path.exists() and not path.is_file():  # a device or a pipe: /dev/zero would be read forever
        raise ReinforgeError(f"{what} '{path}' is not a regular file; name a text file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ReinforgeError(f"cannot read {what} '{path}': {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ReinforgeError(f"{what} '{path}' is not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}); save it as UTF-8") from None
