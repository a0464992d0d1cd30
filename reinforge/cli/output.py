"""Shared terminal output: one rich console for results, one for errors."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape

# Piped output (CI logs, `| less`) gets a wide fixed width instead of rich's 80 columns.
console = Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 160)
error_console = Console(stderr=True, highlight=False)


def print_error(message: str) -> None:
    """A user error: one paragraph, no traceback. The message is escaped: it quotes what the user typed
    (`a[0]=1`, paths) and install hints (`pip install 'reinforge[vllm]'`), which rich would read as markup."""
    # Bytes of a command line that are not UTF-8 reach Python as lone surrogates, which no stream can
    # encode; show them as \xNN escapes instead of failing while reporting the error.
    printable = message.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    error_console.print(f"[bold red]error:[/] {escape(printable)}", markup=True, highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
