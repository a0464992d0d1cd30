"""Consent before a project's local plugins run: the trust store of `reinforge plugins trust`.

A `plugins.toml` that reinforge *finds* (beside the `--config` file, or in the working directory)
may name local modules, and importing them runs their code. A folder someone downloaded or
cloned must not run code because a user stood in it, so a found manifest is loaded only when
it is trusted: `reinforge plugins trust [PATH]` records the SHA-256 of the manifest and of every
module it names, and any later edit to one of them makes it untrusted again (the same consent
as direnv's `allow` or an editor's workspace trust). A manifest named explicitly (`--plugins
PATH`, `REINFORGE_PLUGINS`, `Registry.create(project_file=...)`, `RegistrySettings`) is consent
for that run. A manifest that names no local module imports nothing and needs no trust.

The store is one JSON file per user, `trusted_plugins.json` in `$REINFORGE_CONFIG_DIR`, else
`$XDG_CONFIG_HOME/reinforge`, else `~/.config/reinforge`:

    {"format": 1, "trusted": {"/abs/plugins.toml": {"/abs/plugins.toml": "<sha256>", "/abs/my_env.py": "<sha256>"}}}

What is hashed: the manifest, each `local` `.py` file, and for a `local` module name the module
file or, for a package, every `.py` file under it, found in the manifest's folder. A module name
not found there is an installed module, not code of this folder. What a local module imports in
turn from its folder is not hashed (as direnv does not follow what `.envrc` sources).
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from pathlib import Path

import attrs

from reinforge.core.errors import PluginError

CONFIG_DIR_ENV = "REINFORGE_CONFIG_DIR"
STORE_NAME = "trusted_plugins.json"
STORE_FORMAT = 1


@attrs.frozen
class ManifestCode:
    """The code a project manifest would import: its `local` entries and the files behind them."""

    manifest: Path
    entries: tuple[str, ...]  # as written in `local = [...]`
    files: tuple[Path, ...]  # the manifest itself first, then every local file those entries import

    def digests(self) -> dict[str, str]:
        """SHA-256 of every file, by absolute path (a missing file digests as "missing")."""
        return {str(f): _sha256(f) for f in self.files}


def store_path() -> Path:
    """Where this user's trust store lives (see the module docstring)."""
    if os.environ.get(CONFIG_DIR_ENV):
        return Path(os.environ[CONFIG_DIR_ENV]).expanduser() / STORE_NAME
    base = Path(os.environ["XDG_CONFIG_HOME"]) if os.environ.get("XDG_CONFIG_HOME") else Path.home() / ".config"
    return base / "reinforge" / STORE_NAME


def manifest_code(manifest: str | os.PathLike[str]) -> ManifestCode:
    """What `manifest` would import, read without importing anything."""
    path = Path(manifest).expanduser().resolve()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PluginError(f"cannot read plugin file {path}: {exc}; fix the TOML syntax") from None
    section = data.get("plugins", {})
    local = section.get("local", []) if isinstance(section, dict) else []
    if not isinstance(local, list) or not all(isinstance(x, str) for x in local):
        raise PluginError(f"{path}: `local` and `block` must be lists of strings")
    files: list[Path] = [path]
    for entry in local:
        files.extend(_entry_files(path.parent, entry))
    return ManifestCode(path, tuple(local), tuple(dict.fromkeys(files)))


def _entry_files(folder: Path, entry: str) -> list[Path]:
    if entry.endswith(".py"):
        return [(folder / entry).resolve()]
    top = entry.split(".")[0]
    package = folder / top
    if package.is_dir():
        return sorted(p.resolve() for p in package.rglob("*.py"))
    if (folder / f"{top}.py").is_file():
        return [(folder / f"{top}.py").resolve()]
    return []  # not in this folder: an installed module


def _sha256(file: Path) -> str:
    if not file.is_file():
        return "missing"
    digest = hashlib.sha256()
    with file.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_store() -> dict[str, dict[str, str]]:
    path = store_path()
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        trusted = data["trusted"]
        if data.get("format") != STORE_FORMAT or not isinstance(trusted, dict):
            raise ValueError("unexpected layout")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise PluginError(
            f"the plugin trust store {path} cannot be read ({exc}); delete it and trust your projects again "
            "with `reinforge plugins trust PATH`"
        ) from None
    return {str(k): dict(v) for k, v in trusted.items() if isinstance(v, dict)}


def _write_store(trusted: dict[str, dict[str, str]]) -> Path:
    path = store_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # the user's own record: not world-writable
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"format": STORE_FORMAT, "trusted": trusted}, handle, indent=2, sort_keys=True)
        os.replace(tmp, path)
    except OSError as exc:
        raise PluginError(
            f"cannot write the plugin trust store {path}: {exc.strerror or exc}; set {CONFIG_DIR_ENV} to a folder you can write"
        ) from None
    return path


def trust(manifest: str | os.PathLike[str]) -> ManifestCode:
    """Record `manifest` and the files it imports, as they are now, as trusted; returns what was trusted."""
    code = manifest_code(manifest)
    missing = [str(f) for f in code.files if not f.is_file()]
    if missing:
        raise PluginError(f"{code.manifest}: cannot trust it: local plugin file(s) {', '.join(missing)} do not exist")
    trusted = _read_store()
    trusted[str(code.manifest)] = code.digests()
    _write_store(trusted)
    return code


def revoke(manifest: str | os.PathLike[str]) -> bool:
    """Forget `manifest`; whether it was trusted."""
    path = str(Path(manifest).expanduser().resolve())
    trusted = _read_store()
    if trusted.pop(path, None) is None:
        return False
    _write_store(trusted)
    return True


def untrusted_reason(manifest: str | os.PathLike[str]) -> str | None:
    """None when `manifest` may be loaded (trusted as it is, or it imports nothing); else why not."""
    code = manifest_code(manifest)
    if not code.entries:
        return None
    recorded = _read_store().get(str(code.manifest))
    if recorded is None:
        return "it is not trusted on this machine"
    current = code.digests()
    changed = sorted(Path(f).name for f in set(current) | set(recorded) if current.get(f) != recorded.get(f))
    if not changed:
        return None
    return f"it changed since you trusted it ({', '.join(changed)} differ{'s' if len(changed) == 1 else ''})"


def check_trusted(manifest: str | os.PathLike[str]) -> None:
    """Raise the refusal paragraph when `manifest` may not be loaded."""
    reason = untrusted_reason(manifest)
    if reason is not None:
        raise PluginError(refusal(manifest, reason))


def refusal(manifest: str | os.PathLike[str], reason: str) -> str:
    """One paragraph: which file, what it would import, and how to consent."""
    code = manifest_code(manifest)
    modules = ", ".join(code.entries)
    return (
        f"refusing to load the project plugin file {code.manifest}: {reason}, and it would import local code "
        f"({modules}), which runs as you. Read those files; if you want them to run, trust them with "
        f"`reinforge plugins trust {code.manifest}` (recorded in {store_path()}), or consent for one run with "
        f"--plugins {code.manifest} or REINFORGE_PLUGINS={code.manifest}. If you did not mean to use it, run "
        "from another folder"
    )
