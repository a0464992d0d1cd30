"""Listening TCP sockets of a process tree, from /proc (Linux): who listens, on which address."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def socket_owners() -> dict[str, int]:
    """Socket inode -> pid, for every process this user can inspect."""
    owners: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                try:
                    link = os.readlink(fd)
                except OSError:
                    continue
                if link.startswith("socket:["):
                    owners[link[8:-1]] = int(entry.name)
        except OSError:
            continue
    return owners


def _address(hex_ip: str) -> str:
    raw = bytes.fromhex(hex_ip)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    return socket.inet_ntop(socket.AF_INET6, b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))


def listening_sockets() -> list[tuple[int | None, str, int]]:
    """(pid or None, local address, port) of every TCP socket in LISTEN state on this machine."""
    owners = socket_owners()
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != "0A":  # TCP_LISTEN
                continue
            hex_ip, hex_port = fields[1].split(":")
            found.append((owners.get(fields[9]), _address(hex_ip), int(hex_port, 16)))
    return found


def is_loopback(address: str) -> bool:
    return address.startswith("127.") or address in ("::1", "::ffff:127.0.0.1") or address.startswith("::ffff:127.")


def process_tree(root: int) -> dict[int, str]:
    """pid -> command name of `root` and all its descendants (from /proc/*/stat)."""
    parents: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        parents[int(entry.name)] = (ppid, name)
    tree = {root: parents.get(root, (0, "?"))[1]}
    grew = True
    while grew:
        grew = False
        for pid, (ppid, name) in parents.items():
            if ppid in tree and pid not in tree:
                tree[pid] = name
                grew = True
    return tree
