"""Whether an address stays on this machine (for warnings about wider binds)."""

from __future__ import annotations


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` is a loopback name or address."""
    host = host.strip("[]")
    return host == "localhost" or host == "::1" or host.startswith("127.")


def is_loopback(endpoint: str) -> bool:
    """Whether a ZeroMQ endpoint stays on this machine (loopback TCP, ipc, inproc)."""
    scheme, _, rest = endpoint.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    return is_loopback_host(rest.rsplit(":", 1)[0])
