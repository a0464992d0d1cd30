"""The one error type a user can cause, and how it is shown.

Anything a user can fix (a bad config value, an unknown plugin name, a missing model folder)
raises `ReinforgeError`: the CLI prints its message as one paragraph and exits non-zero,
without a traceback. Programming errors are left to crash loudly.
"""

from __future__ import annotations


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
