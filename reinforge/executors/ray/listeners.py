"""Which address the run's network listeners bind, and binding them there.

A run opens listeners of its own: a locally started Ray (GCS, raylet, object manager, agents),
the training workers' process-group store (rank 0), the collective refit group's store and
gloo's pair sockets. None of them authenticates its peers, so by default they bind loopback
only: a single-node run is reachable from this machine, not from the network.

Multi-node runs opt in with `cluster.bind_address` (this node's address, or 0.0.0.0). Ray then
keeps its token authentication (reinforge disables it only for a loopback-only Ray, where it
would protect nothing the user's own account cannot reach), and the stores bind the worker's
node address instead of every interface.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from typing import Any

LOOPBACK = "127.0.0.1"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def prepare_local_ray(bind_address: str | None) -> dict[str, Any]:
    """Environment and `ray.init` arguments for a Ray this process starts; call before `ray.init`.

    Ray binds its servers to the node address it picks; with its "no cluster" switch (meant for
    laptops) that address is loopback. The switch is read when `ray` is imported, so it is set in
    the environment (inherited by Ray's processes) and on the already-imported module.
    """
    if bind_address is None or is_loopback(bind_address):
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # loopback only: nothing off this machine can connect
        import ray._private.ray_constants as ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False
        return {}
    return {"_node_ip_address": bind_address}


def worker_bind_host() -> str:
    """The address a Ray worker's listeners bind: its node address (loopback on a single-node default run)."""
    import ray

    return ray.util.get_node_ip_address()


def restrict_gloo(host: str) -> None:
    """gloo binds the interface named by GLOO_SOCKET_IFNAME (else the hostname's address): pin it to loopback."""
    if is_loopback(host) and "GLOO_SOCKET_IFNAME" not in os.environ:
        names = {name for _, name in socket.if_nameindex()}
        for candidate in ("lo", "lo0"):
            if candidate in names:
                os.environ["GLOO_SOCKET_IFNAME"] = candidate
                return


def free_port(host: str) -> int:
    """A port free on `host` (for a rendezvous whose store another call creates)."""
    with socket.socket(_family(host)) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def host_tcp_store(host: str, port: int, timeout_s: float, *, wait_for_workers: bool = False) -> Any:
    """A master `TCPStore` listening on `host` only (torch's own binds every interface whatever host it is given)."""
    import torch.distributed as dist

    sock = socket.socket(_family(host))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    bound_port = int(sock.getsockname()[1])
    fd = sock.detach()  # the store owns the descriptor from here on (closing it under the store aborts the process)
    return dist.TCPStore(
        host,
        bound_port,
        is_master=True,
        master_listen_fd=fd,
        wait_for_workers=wait_for_workers,
        timeout=datetime.timedelta(seconds=timeout_s),
    )


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
