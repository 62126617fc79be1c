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

#: scrypt's cost: N=2^16, r=8, p=2 is one of OWASP's equivalent minimums (as costly to
#: guess as N=2^17, p=1) that needs 64 MiB rather than 128 MiB: up to ~0.7 s of one core a
#: check. Hashes made with other figures (N=2^14, p=1 before) still log in and are made
#: again with these at their user's next login.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**16, 8, 2
#: The most a stored record may ask of scrypt (a file edited by hand must not take 4 GiB).
_MAX_N, _MAX_R, _MAX_P = 2**20, 32, 16
USER_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}\Z")
MIN_PASSWORD = 8
VERSION = 1


class AuthError(ValueError):
    """A user, password or credentials file that cannot be used as given."""


def hash_password(password: str, salt: bytes | None = None, n: int = SCRYPT_N,
                  r: int = SCRYPT_R, p: int = SCRYPT_P) -> dict:
    """The stored form of a password: scrypt with a random 16-byte salt."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = _scrypt(password, salt, n, r, p)
    return {"scheme": "scrypt", "n": n, "r": r, "p": p, "salt": salt.hex(),
            "hash": digest.hex()}


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    if not (1 < n <= _MAX_N and 0 < r <= _MAX_R and 0 < p <= _MAX_P):
        raise ValueError(f"scrypt figures n={n} r={r} p={p} are out of bounds")
    # OpenSSL's default ceiling (32 MiB) is below 128 * r * n for n >= 2^15
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32,
                          maxmem=2 * 128 * r * (n + p) + (1 << 20))


def is_current(record: dict) -> bool:
    """Whether ``record`` was hashed with today's figures (:data:`SCRYPT_N` ...)."""
    return (record.get("scheme"), record.get("n"), record.get("r"), record.get("p")) == (
        "scrypt", SCRYPT_N, SCRYPT_R, SCRYPT_P)


def password_stamp(record: dict) -> str:
    """What stays the same while a user keeps their password, rehashing included (its
    ``set`` id; the hash itself for a record made before ids)."""
    return str(record.get("set") or record.get("hash", ""))


def check_password(record: dict, password: str) -> bool:
    """Whether ``password`` is the one ``record`` (:func:`hash_password`) was made from."""
    try:
        digest = _scrypt(password, bytes.fromhex(record["salt"]), int(record["n"]),
                         int(record["r"]), int(record["p"]))
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
        # a new "set" id ends the sessions of the old password (see password_stamp)
        users = {**data["users"], name: {**hash_password(password),
                                         "set": secrets.token_hex(8)}}
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
        if not check_password(record, password):
            return False
        if not is_current(record):
            self._rehash(name, record, password)
        return True

    def _rehash(self, name: str, record: dict, password: str) -> None:
        """Hash a user's password again with today's figures (they logged in with it)."""
        fresh = {**hash_password(password), "set": password_stamp(record)}
        data = self.data()
        if data["users"].get(name) != record:
            return      # changed meanwhile (``vadstream users``): that change stands
        try:
            self._save({**data, "users": {**data["users"], name: fresh}})
        except OSError as err:
            log.warning("could not store %s's password with today's scrypt figures in "
                        "%s (%s); it stays as it was", name, self.path, err)
            return
        log.info("%s's password hash was made again with scrypt N=%d r=%d p=%d", name,
                 SCRYPT_N, SCRYPT_R, SCRYPT_P)

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
