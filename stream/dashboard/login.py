"""Who may use the dashboard: the login page, sessions, and the middleware that guards
every route (:mod:`stream.dashboard.auth` keeps the credentials).

The rule: when ``serve`` listens beyond loopback, or whenever credentials are set up,
every page, API call, ``/ws`` and ``/metrics`` needs a login; the login page and the
static files do not. Without a login, only requests for a loopback name are answered.
A browser logs in with a form (a random session id in an HttpOnly, SameSite=Strict
cookie, kept in memory for 12 hours; ``Secure`` when the login came over TLS, or always
with ``secure_cookies: always`` behind a TLS proxy); an API client sends
``Authorization: Bearer TOKEN`` or HTTP Basic. A request that changes something (POST,
DELETE) or opens ``/ws`` with an ``Origin`` of another site is refused, login or not.
Password checks are throttled (:mod:`stream.dashboard.throttle`). An open ``/ws`` is
closed as soon as what let it in ends: a logout, its user removed or given a new password,
its token removed, or a login set up for a dashboard that had none.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hashlib
import hmac
import html
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from stream.dashboard.auth import AuthError, Credentials, hash_token, password_stamp
from stream.dashboard.hub import ALLOWED, WHO
from stream.dashboard.throttle import LoginLimiter, ThrottledError
from stream.wire.endpoints import is_loopback_host

log = logging.getLogger(__name__)

COOKIE = "vadstream_session"
SESSION_S = 12 * 3600
#: Seconds a failed login (form or header) waits before its answer (slows guessing; the
#: loop stays free meanwhile).
FAILED_DELAY_S = 1.0
PUBLIC = ("/login", "/static/")
CHANGES = ("POST", "PUT", "PATCH", "DELETE")
#: ``secure_cookies``: ``auto`` marks the cookie Secure when the login request itself came
#: over TLS; ``always`` does so whatever the request (behind a proxy that ends TLS).
SECURE_COOKIES = ("auto", "always")


@dataclass(frozen=True)
class Grant:
    """What let a request in, enough to tell later whether it still would.

    Args:
        kind: ``open`` (no login needed then), ``session``, ``basic`` or ``token``.
        name: The user or token name ("" when open).
        key: The session id's digest, the user's password stamp, or the token's digest.
    """

    kind: str
    name: str = ""
    key: str = ""

    @property
    def who(self) -> str:
        return f"token:{self.name}" if self.kind == "token" else self.name

LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vadstream: log in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/static/style.css"></head>
<body><main class="login"><h1>vadstream</h1>
<form method="post" action="/login">
<p>{message}</p>
<label>User <input name="user" autocomplete="username" required autofocus></label>
<label>Password <input name="password" type="password" autocomplete="current-password"
 required></label>
<button type="submit">Log in</button></form></main></body></html>
"""


class Guard:
    """Sessions and the checks of each request.

    Args:
        credentials: The users and tokens.
        beyond_loopback: Whether the dashboard listens beyond this machine (then a login
            is needed even if every credential was removed meanwhile: nothing passes).
        secure_cookies: ``auto`` or ``always`` (see :data:`SECURE_COOKIES`).
        limiter: The limits on password checks.
    """

    def __init__(self, credentials: Credentials, beyond_loopback: bool,
                 secure_cookies: str = "auto", limiter: LoginLimiter | None = None) -> None:
        if secure_cookies not in SECURE_COOKIES:
            raise ValueError(f"secure_cookies {secure_cookies!r} is not one of "
                             f"{', '.join(SECURE_COOKIES)}")
        self.credentials = credentials
        self.beyond_loopback = beyond_loopback
        self.secure_cookies = secure_cookies
        self.limiter = limiter or LoginLimiter()
        #: Awaited after a logout, to close what the ended session had open (``/ws``).
        self.on_logout: Callable[[], Awaitable[None]] | None = None
        # sha256(id) -> (user, expiry, the user's password stamp then)
        self._sessions: dict[str, tuple[str, float, str]] = {}
        self._basic: OrderedDict[str, tuple[Grant, tuple | None]] = OrderedDict()
        self._key = secrets.token_bytes(32)

    def required(self) -> bool:
        """Whether requests need a login now."""
        return self.beyond_loopback or self.credentials.configured()

    # -- identities ------------------------------------------------------------------------
    async def identify(self, request: web.Request) -> Grant | None:
        """What lets a request in (a user, a token, a session), or None.

        Raises:
            ThrottledError: When its password may not be checked now.
        """
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            name = self.credentials.check_token(value.strip())
            return Grant("token", name, hash_token(value.strip())) if name else None
        if scheme.lower() == "basic" and value.strip():
            return await self._basic_user(value.strip(), request.remote or "")
        sid = request.cookies.get(COOKIE)
        if sid:
            digest = _digest(sid)
            name = self._session_user(digest)
            return Grant("session", name, digest) if name else None
        return None

    def _session_user(self, digest: str) -> str | None:
        found = self._sessions.get(digest)
        if found is None or found[1] <= time.time():
            return None
        # a user removed, or given a new password, since: the session is over
        record = self.credentials.data()["users"].get(found[0])
        if isinstance(record, dict) and hmac.compare_digest(password_stamp(record), found[2]):
            return found[0]
        return None

    def allows(self, grant: Grant) -> bool:
        """Whether ``grant`` would still let a request in (a ``/ws`` opened with it stays
        open while it does)."""
        try:
            if grant.kind == "open":
                return not self.required()
            if grant.kind == "session":
                return self._session_user(grant.key) is not None
            if grant.kind == "basic":
                record = self.credentials.data()["users"].get(grant.name)
                return isinstance(record, dict) and hmac.compare_digest(
                    password_stamp(record), grant.key)
            if grant.kind == "token":
                return any(hmac.compare_digest(grant.key, str(t.get("sha256", "")))
                           for t in self.credentials.data()["tokens"])
        except AuthError:
            return False
        return False

    async def check_password(self, client: str, name: str, password: str) -> bool:
        """Whether ``name`` has ``password``, within the throttle's limits.

        Raises:
            ThrottledError: When the check may not run now (nothing ran).
        """
        return await self.limiter.run(client, name,
                                      lambda: self.credentials.check_user(name, password))

    async def _basic_user(self, value: str, client: str) -> Grant | None:
        try:
            name, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        if not sep:
            return None
        # scrypt is slow on purpose: a client sending Basic on every request is checked
        # once per credentials file version (the cache key is keyed, so it reveals nothing).
        key = hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()
        stamp = self.credentials.version
        cached = self._basic.get(key)
        if cached is not None and cached[1] == stamp and stamp is not None:
            return cached[0]
        if not await self.check_password(client, name, password):
            return None
        record = self.credentials.data()["users"].get(name, {})
        grant = Grant("basic", name, password_stamp(record))
        self._basic[key] = (grant, self.credentials.version)
        while len(self._basic) > 256:
            self._basic.popitem(last=False)
        return grant

    # -- the middleware --------------------------------------------------------------------
    @web.middleware
    async def middleware(self, request: web.Request, handler):
        if (request.method in CHANGES or request.path == "/ws") and not _same_origin(request):
            return web.json_response({"error": f"{request.method} {request.path} from "
                                      f"another site ({request.headers.get('Origin')}) is "
                                      "refused"}, status=403)
        if request.path.startswith(PUBLIC):
            return await handler(request)
        try:
            required = self.required()
            grant = await self.identify(request) if required else Grant("open")
        except AuthError as err:
            return web.json_response({"error": str(err)}, status=500)
        except ThrottledError as err:
            log.warning("%s %s from %s: %s", request.method, request.path, request.remote,
                        err)
            return web.json_response({"error": str(err)}, status=429,
                                     headers={"Retry-After": str(err.retry_after)})
        if not required and not _loopback_name(request):
            # open without a login: for this machine's own names only (a page whose name
            # was rebound to 127.0.0.1 would otherwise read and change the streams)
            return web.json_response(
                {"error": f"this dashboard has no login and answers only requests for "
                          f"localhost or 127.0.0.1, not {request.host!r}: set up a login "
                          "(`vadstream users add NAME`) to reach it by another name"},
                status=403)
        if grant is None:
            if request.method == "GET" and request.path == "/":
                raise web.HTTPSeeOther("/login")
            if "Authorization" in request.headers:   # wrong credentials: slow the guessing
                log.warning("%s %s with wrong credentials from %s", request.method,
                            request.path, request.remote)
                await asyncio.sleep(FAILED_DELAY_S)
            return web.json_response(
                {"error": "login required: send Authorization: Bearer TOKEN (`vadstream "
                          "users token`) or HTTP Basic with a user (`vadstream users add "
                          "NAME`), or log in at /login"},
                status=401, headers={"WWW-Authenticate": 'Bearer realm="vadstream"'})
        if request.method in CHANGES and request.path != "/logout":
            log.info("%s %s by %s", request.method, request.path, grant.who or "(no login)")
        request[ALLOWED] = functools.partial(self.allows, grant)
        request[WHO] = grant.who or "local"
        return await handler(request)

    # -- the login page --------------------------------------------------------------------
    async def login_page(self, request: web.Request) -> web.Response:
        message = ("Wrong user or password." if "failed" in request.query
                   else "Log in to watch and change the streams.")
        return _page(message)

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        name, password = str(form.get("user", "")), str(form.get("password", ""))
        try:
            ok = await self.check_password(request.remote or "", name, password)
        except AuthError as err:
            return web.json_response({"error": str(err)}, status=500)
        except ThrottledError as err:
            log.warning("login as %r from %s: %s", name, request.remote, err)
            return _page(f"Too many login attempts: try again in {err.retry_after} s.",
                         status=429, headers={"Retry-After": str(err.retry_after)})
        if not ok:
            log.warning("failed login as %r from %s", name, request.remote)
            await asyncio.sleep(FAILED_DELAY_S)
            raise web.HTTPSeeOther("/login?failed=1")
        sid = secrets.token_urlsafe(32)
        now = time.time()
        self._sessions = {k: v for k, v in self._sessions.items() if v[1] > now}
        record = self.credentials.data()["users"].get(name, {})
        self._sessions[_digest(sid)] = (name, now + SESSION_S, password_stamp(record))
        log.info("%s logged in from %s", name, request.remote)
        response = web.HTTPSeeOther("/")
        response.set_cookie(COOKIE, sid, max_age=SESSION_S, httponly=True, samesite="Strict",
                            path="/", secure=request.secure or self.secure_cookies == "always")
        raise response

    async def logout(self, request: web.Request) -> web.Response:
        sid = request.cookies.get(COOKIE)
        if sid:
            self._sessions.pop(_digest(sid), None)
            if self.on_logout is not None:
                await self.on_logout()
        response = web.HTTPSeeOther("/login")
        response.del_cookie(COOKIE, path="/")
        raise response


def _page(message: str, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(text=LOGIN_PAGE.format(message=html.escape(message)), status=status,
                        content_type="text/html",
                        headers={"Cache-Control": "no-store", **(headers or {})})


def _digest(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


def _loopback_name(request: web.Request) -> bool:
    """Whether the request's ``Host`` is a loopback name or address."""
    try:
        host = urlsplit(f"//{request.host}").hostname
    except ValueError:
        return False
    return host is not None and is_loopback_host(host)


def _same_origin(request: web.Request) -> bool:
    """Whether the request's ``Origin`` (when a browser sent one) is this dashboard's host
    (the scheme aside: behind a TLS proxy the page is https, the request here http)."""
    origin = request.headers.get("Origin")
    return origin is None or urlsplit(origin).netloc == request.host


def add_login_routes(app: web.Application, guard: Guard) -> None:
    app.router.add_get("/login", guard.login_page)
    app.router.add_post("/login", guard.login)
    app.router.add_post("/logout", guard.logout)
