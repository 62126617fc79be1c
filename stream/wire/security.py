"""CURVE encryption and authentication for every socket (pyzmq's ``zmq.auth``).

Keys are ZeroMQ certificate files (text, made by ``vadstream keys``): the detector holds
the server secret key and a folder of the client public keys it admits; every client
holds its own secret key and the server's public key. A client without an admitted key
can neither push frames nor read topics.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

log = logging.getLogger(__name__)


def make_keys(folder: str | Path, names: list[str]) -> list[Path]:
    """Create a key pair per name (``NAME.key`` public, ``NAME.key_secret`` secret).

    Returns:
        The public key files.

    Raises:
        FileExistsError: Rather than overwrite an existing key.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name in names:
        if (folder / f"{name}.key_secret").exists():
            raise FileExistsError(f"{folder / name}.key_secret exists; remove it first to "
                                  "make a new key")
        public, secret = zmq.auth.create_certificates(str(folder), name)
        os.chmod(secret, 0o600)   # pyzmq writes it with the umask's permissions
        out.append(Path(public))
    return out


def _load(path: str | Path, secret: bool) -> tuple[bytes, bytes | None]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"key file {path} not found; make keys with `vadstream keys`")
    public, secret_key = zmq.auth.load_certificate(str(path))
    if secret and secret_key is None:
        raise ValueError(f"{path} holds no secret key; give the .key_secret file")
    return public, secret_key


@dataclass(frozen=True)
class CurveServer:
    """The detector's side: its secret key file and the folder of admitted client keys."""

    secret_key: str
    allowed: str

    def start(self, context: zmq.Context) -> ThreadAuthenticator:
        """Start the authenticator that admits only the keys in ``allowed``."""
        if not Path(self.allowed).is_dir():
            raise FileNotFoundError(f"allowed-keys folder {self.allowed} not found; put the "
                                    "clients' .key files there")
        auth = ThreadAuthenticator(context)
        auth.start()
        auth.configure_curve(domain="*", location=str(self.allowed))
        return auth

    def bound_streams(self, names: dict[str, list[str]]) -> dict[str, list[str]]:
        """Client keys -> the stream ids each may send, from key names (the ``NAME`` of
        ``NAME.key`` in ``allowed``) to the Z85 public keys ZeroMQ reports as the
        sender's ``User-Id``.

        Raises:
            FileNotFoundError: If a named key is not in ``allowed``.
        """
        out = {}
        for name, streams in names.items():
            public, _ = _load(Path(self.allowed) / f"{name}.key", secret=False)
            out[public.decode()] = [str(s) for s in streams]
        return out

    def apply(self, socket: zmq.Socket) -> None:
        """Make a bound socket a CURVE server (before bind)."""
        public, secret = _load(self.secret_key, secret=True)
        socket.curve_publickey = public
        socket.curve_secretkey = secret
        socket.curve_server = True


@dataclass(frozen=True)
class CurveClient:
    """A client's side: its own secret key file and the detector's public key file."""

    secret_key: str
    server_key: str

    def apply(self, socket: zmq.Socket) -> None:
        """Make a connecting socket a CURVE client (before connect)."""
        public, secret = _load(self.secret_key, secret=True)
        server, _ = _load(self.server_key, secret=False)
        socket.curve_publickey = public
        socket.curve_secretkey = secret
        socket.curve_serverkey = server


def client_from_args(secret_key: str | None, server_key: str | None) -> CurveClient | None:
    """A CurveClient from the two command-line flags (both or neither)."""
    if not secret_key and not server_key:
        return None
    if not (secret_key and server_key):
        raise ValueError("CURVE needs both --curve-key (your .key_secret) and --curve-server "
                         "(the detector's .key)")
    return CurveClient(secret_key, server_key)
