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
    error_console.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
