"""The dashboard's login: users with scrypt-hashed passwords and API tokens kept as
SHA-256 hashes in one file (mode 0600), set up by ``vadstream users``.

Nothing secret is stored in plain text: a password is kept as ``scrypt(password, salt)``
with a random salt per user, a token (32 random bytes, so a fast hash is enough) as its
SHA-256; both are compared in constant time.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import stat
import time
from pathlib import Path

log = logging.getLogger(__name__)

#: scrypt's cost: 16 MiB of memory and ~50 ms a check (RFC 7914's interactive figures).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
USER_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}\Z")
MIN_PASSWORD = 8
VERSION = 1


class AuthError(ValueError):
    """A user, password or credentials file that cannot be used as given."""


def hash_password(password: str, salt: bytes | None = None, n: int = SCRYPT_N,
                  r: int = SCRYPT_R, p: int = SCRYPT_P) -> dict:
    """The stored form of a password: scrypt with a random 16-byte salt."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    return {"scheme": "scrypt", "n": n, "r": r, "p": p, "salt": salt.hex(),
            "hash": digest.hex()}


def check_password(record: dict, password: str) -> bool:
    """Whether ``password`` is the one ``record`` (:func:`hash_password`) was made from."""
    try:
        digest = hashlib.scrypt(password.encode(), salt=bytes.fromhex(record["salt"]),
                                n=int(record["n"]), r=int(record["r"]), p=int(record["p"]),
                                dklen=32)
        return hmac.compare_digest(digest.hex(), record["hash"])
    except (KeyError, ValueError, TypeError):
        return False


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Credentials:
    """The credentials file: ``{"v": 1, "users": {name: hashed}, "tokens": [{name,
    sha256, created}]}``, re-read whenever it changes on disk (``vadstream users`` while
    the dashboard runs takes effect at once).

    Args:
        path: The file (created by the first user or token, mode 0600).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._data: dict = {"users": {}, "tokens": []}
        self._stamp: tuple | None = None

    def data(self) -> dict:
        """The file's content (empty when it does not exist)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._data, self._stamp = {"users": {}, "tokens": []}, None
            return self._data
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp != self._stamp:
            if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                log.warning("%s is readable by others; chmod 600 it", self.path)
            try:
                data = json.loads(self.path.read_text())
            except (OSError, json.JSONDecodeError) as err:
                raise AuthError(f"{self.path} is not a vadstream credentials file ({err}); "
                                "move it away and set users up again with `vadstream "
                                "users`") from None
            if not isinstance(data, dict) or data.get("v") != VERSION:
                raise AuthError(f"{self.path} is not a version-{VERSION} vadstream "
                                "credentials file")
            data.setdefault("users", {})
            data.setdefault("tokens", [])
            self._data, self._stamp = data, stamp
        return self._data

    @property
    def version(self) -> tuple | None:
        """Which version of the file :meth:`data` last read (None: none)."""
        return self._stamp

    def configured(self) -> bool:
        """Whether any user or token is set up."""
        data = self.data()
        return bool(data["users"] or data["tokens"])

    def _save(self, data: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({**data, "v": VERSION}, f, indent=1)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)
        self._stamp = None

    # -- changes (``vadstream users``) -----------------------------------------------------
    def add_user(self, name: str, password: str) -> bool:
        """Add a user or set its password; True if it is new.

        Raises:
            AuthError: A name with other characters than letters, digits and ``_.@-``, or a
                password shorter than 8 characters.
        """
        if not USER_NAME.fullmatch(name):
            raise AuthError(f"user name {name!r}: 1-64 letters, digits, '_', '.', '@' or '-'")
        if len(password) < MIN_PASSWORD:
            raise AuthError(f"a password has at least {MIN_PASSWORD} characters")
        data = self.data()
        new = name not in data["users"]
        users = {**data["users"], name: hash_password(password)}
        self._save({**data, "users": users})
        return new

    def remove(self, name: str) -> None:
        """Remove a user or a token by its name.

        Raises:
            AuthError: If neither has that name.
        """
        data = self.data()
        tokens = [t for t in data["tokens"] if t.get("name") != name]
        if name not in data["users"] and len(tokens) == len(data["tokens"]):
            raise AuthError(f"no user or token {name!r} in {self.path}; `vadstream users "
                            "list` shows them")
        users = {k: v for k, v in data["users"].items() if k != name}
        self._save({**data, "users": users, "tokens": tokens})

    def new_token(self, name: str = "") -> tuple[str, str]:
        """Make a token; returns ``(name, token)``. Only its hash is kept: the token is
        shown once."""
        data = self.data()
        taken = {t.get("name") for t in data["tokens"]}
        name = name or next(f"token-{i}" for i in range(1, len(taken) + 2)
                            if f"token-{i}" not in taken)
        if not USER_NAME.fullmatch(name):
            raise AuthError(f"token name {name!r}: 1-64 letters, digits, '_', '.', '@' or '-'")
        if name in taken:
            raise AuthError(f"a token named {name!r} exists; remove it first or pick another")
        token = secrets.token_urlsafe(32)
        entry = {"name": name, "sha256": hash_token(token),
                 "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self._save({**data, "tokens": [*data["tokens"], entry]})
        return name, token

    # -- checks ----------------------------------------------------------------------------
    def check_user(self, name: str, password: str) -> bool:
        """Whether ``name`` has ``password`` (slow on purpose: scrypt)."""
        record = self.data()["users"].get(name)
        if record is None:
            check_password(_dummy(), password)   # the same time for an unknown name
            return False
        return check_password(record, password)

    def check_token(self, token: str) -> str | None:
        """The name of the token ``token`` is, or None."""
        digest = hash_token(token)
        found = None
        for entry in self.data()["tokens"]:
            if hmac.compare_digest(digest, str(entry.get("sha256", ""))):
                found = entry.get("name") or "token"
        return found


@functools.cache
def _dummy() -> dict:
    return hash_password("not a password", salt=b"\0" * 16)
