"""`reinforge plugins trust [PATH]`: consent to a project's local plugins (see `reinforge.core.plugin_trust`).

A `plugins.toml` found beside the config or in the working directory is loaded only once trusted;
this records the SHA-256 of the manifest and of every module it names. Editing any of them
makes it untrusted again, and `--revoke` forgets it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.markup import escape

from reinforge.cli.output import console
from reinforge.core import plugin_trust
from reinforge.core.errors import PluginError
from reinforge.core.registry import PROJECT_FILE_NAME, find_project_file


def add_trust_parser(actions: argparse._SubParsersAction) -> None:
    trust = actions.add_parser("trust", help="allow a project's plugins.toml and the local modules it names to run")
    trust.add_argument("path", nargs="?", help=f"the {PROJECT_FILE_NAME} or its folder (default: --plugins, else ./{PROJECT_FILE_NAME})")
    trust.add_argument("--revoke", action="store_true", help="forget it: it is refused again until trusted")
    trust.set_defaults(run=run_trust)


def _manifest(args: argparse.Namespace) -> Path:
    given = args.path or args.plugins
    if given is None:
        found = find_project_file(cwd=Path.cwd())
        if found is None:
            raise PluginError(f"no {PROJECT_FILE_NAME} in {Path.cwd()}; name one: reinforge plugins trust PATH")
        return found
    path = Path(given).expanduser()
    if path.is_dir():
        path = path / PROJECT_FILE_NAME
    if not path.is_file():
        raise PluginError(f"plugin file '{path}' does not exist; name an existing {PROJECT_FILE_NAME} (or its folder)")
    return path.resolve()


def run_trust(args: argparse.Namespace) -> int:
    manifest = _manifest(args)
    if args.revoke:
        removed = plugin_trust.revoke(manifest)
        console.print(f"{'no longer trusted' if removed else 'was not trusted'}: {escape(str(manifest))}")
        return 0
    code = plugin_trust.trust(manifest)
    console.print(f"trusted {escape(str(code.manifest))} (recorded in {escape(str(plugin_trust.store_path()))}):")
    for file, digest in code.digests().items():
        console.print(f"  {digest[:16]}  {escape(file)}")
    if not code.entries:
        console.print("it names no local module, so it imports nothing")
    return 0


def untrusted_records(manifest: str | None) -> list[dict[str, Any]]:
    """One record per module an untrusted manifest would import (for `plugins list`; nothing is imported)."""
    if manifest is None:
        return []
    code = plugin_trust.manifest_code(manifest)
    folder = code.manifest.parent
    return [
        {
            "module": Path(entry).stem if entry.endswith(".py") else entry,
            "file": str((folder / entry).resolve()) if entry.endswith(".py") else None,
            "manifest": str(code.manifest),
            "status": "untrusted",
        }
        for entry in code.entries
    ]
