"""``vadstream keys``: CURVE key pairs for the detector and its clients."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from stream.apps.commands.common import add_options, options
from stream.apps.flags import flag


@dataclass(frozen=True)
class KeysOptions:
    """``vadstream keys``.

    Args:
        dir: folder the key files go to
        name: key pair names (default: server, client)
    """

    dir: str = "keys"
    name: list[str] | None = flag(None, action="append")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``keys``."""
    y = sub.add_parser("keys", help="make CURVE key pairs for the detector and its clients")
    add_options(y, KeysOptions)
    y.set_defaults(func=cmd_keys)


def cmd_keys(args: argparse.Namespace) -> int:
    """Write the key pairs and say which flag takes which file."""
    from stream.wire.security import make_keys

    opts = options(args, KeysOptions)
    for public in make_keys(opts.dir, opts.name or ["server", "client"]):
        print(f"{public} (secret: {public}_secret)")
    print(f"detector: --curve-secret-key {opts.dir}/server.key_secret --curve-allowed DIR "
          "(a folder with the admitted clients' .key files); clients: --curve-key "
          f"{opts.dir}/client.key_secret --curve-server {opts.dir}/server.key")
    return 0
