"""Whether an address stays on this machine (for warnings about wider binds)."""

from __future__ import annotations

import ipaddress
import random
import socket
from pathlib import Path


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` stays on this machine: ``localhost``, or an address (IPv4, or IPv6
    with or without brackets) that :mod:`ipaddress` calls loopback, and nothing else.

    A name is never judged by how it looks: ``127.attacker.example`` is whatever its owner
    makes it resolve to (a DNS-rebinding page resolves it to 127.0.0.1 first, then uses it
    as its own origin), so only the literal addresses count.
    """
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback(endpoint: str) -> bool:
    """Whether a ZeroMQ endpoint stays on this machine (loopback TCP, ipc, inproc)."""
    scheme, _, rest = endpoint.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    return is_loopback_host(rest.rsplit(":", 1)[0])


def ports_outside_the_ephemeral_range() -> range:
    """Ports the kernel never hands out by itself (for bind(0) or an outgoing connection)."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    if low - 1024 >= 2000:
        return range(max(1024, low - 12000), low)
    return range(high + 1, 65536)


def free_loopback_port() -> int:
    """A loopback TCP port that is free now and outside the kernel's ephemeral range, for an
    endpoint that must be named before the process that binds it starts: a port picked by
    binding port 0 can be handed to any outgoing connection (a Ray cluster starting makes
    many) before its owner binds it.

    Raises:
        OSError: If no port of that range is free.
    """
    candidates = ports_outside_the_ephemeral_range()
    start = random.SystemRandom().randrange(len(candidates))
    for i in range(len(candidates)):
        port = candidates[(start + i) % len(candidates)]
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise OSError(f"no free loopback port in {candidates.start}..{candidates.stop - 1}")


def connect_endpoint(bind: str) -> str:
    """The endpoint a local client connects to for a bound endpoint (``*`` -> loopback)."""
    return bind.replace("://*:", "://127.0.0.1:").replace("://0.0.0.0:", "://127.0.0.1:")
