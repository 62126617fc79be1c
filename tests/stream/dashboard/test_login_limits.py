"""Password guessing is throttled before scrypt runs, old hashes are upgraded at login,
and a login's end closes the WebSockets it opened (real HTTP and WebSockets on loopback)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import time

import aiohttp
import pytest
from aiohttp import web

from stream.dashboard import auth
from stream.dashboard.app import GUARD, build_app
from stream.dashboard.auth import Credentials, check_password, hash_password
from stream.dashboard.config import ServeConfig
from stream.dashboard.throttle import BURST, REFILL_S, Buckets
from tests.conftest import reserve_port

PASSWORD = "correct horse battery"


def _basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _config(tmp_path, **kw) -> ServeConfig:
    return ServeConfig(http="127.0.0.1:0", events_db=str(tmp_path / "e.db"), control="",
                       supervisor="", auth_file=str(tmp_path / "users.json"),
                       connect=f"tcp://127.0.0.1:{reserve_port()}", **kw)


async def _serve(app: web.Application):
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


def _client(address: str = "127.0.0.1") -> aiohttp.ClientSession:
    """A client whose requests come from ``address`` (any 127.x is this machine)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0)),
                                 cookie_jar=aiohttp.CookieJar(unsafe=True))


@pytest.fixture
def scrypt_calls(monkeypatch):
    """Every scrypt actually run (the real one, counted)."""
    calls = []
    real = hashlib.scrypt

    def counted(*args, **kwargs):
        calls.append(time.monotonic())
        return real(*args, **kwargs)
    monkeypatch.setattr(auth.hashlib, "scrypt", counted)
    return calls


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_parallel_flood_of_guesses_is_throttled_before_scrypt_runs(tmp_path, scrypt_calls):
    creds = Credentials(tmp_path / "users.json")
    creds.add_user("alice", PASSWORD)
    creds.add_user("bob", PASSWORD)
    app = build_app(_config(tmp_path))

    async def check():
        runner, base = await _serve(app)
        try:
            async with _client() as s, _client("127.0.0.2") as other:
                async def get(session, headers):
                    async with session.get(base + "/api/streams", headers=headers) as r:
                        return r.status, r.headers.get("Retry-After"), await r.text()

                # alice's API client checked once before the flood (then cached)
                assert (await get(s, _basic("alice", PASSWORD)))[0] == 200
                before = len(scrypt_calls)
                t0 = time.monotonic()
                answers = await asyncio.gather(*[
                    get(s, _basic("alice", f"guess {i}")) for i in range(40)])
                elapsed = time.monotonic() - t0
                ran = len(scrypt_calls) - before
                codes = [a[0] for a in answers]
                assert set(codes) <= {401, 429}, codes
                assert codes.count(401) == ran        # every guess let through ran scrypt
                # a bucket starts with BURST and earns one back each REFILL_S
                assert 1 <= ran <= BURST + math.floor(elapsed / REFILL_S), (ran, elapsed)
                refused = [a for a in answers if a[0] == 429]
                assert len(refused) >= 40 - BURST - math.floor(elapsed / REFILL_S)
                waits = [int(a[1]) for a in refused]
                assert all(1 <= w <= math.ceil(REFILL_S) for w in waits), waits
                assert all("too many login attempts" in a[2] for a in refused)
                assert app[GUARD].limiter.checks == ran + 1

                # not locked out meanwhile: alice's checked API client, and another user
                # on another address
                assert (await get(s, _basic("alice", PASSWORD)))[0] == 200
                assert (await get(other, _basic("bob", PASSWORD)))[0] == 200
                # the form is throttled too (an unknown name costs the same scrypt)
                forms = await asyncio.gather(*[other.post(
                    base + "/login", data={"user": "mallory", "password": f"x{i}"},
                    allow_redirects=False) for i in range(BURST + 10)])
                assert sorted({r.status for r in forms}) == [303, 429]
                assert all(int(r.headers["Retry-After"]) >= 1 for r in forms if r.status == 429)
                for r in forms:
                    r.release()

                # after the window the right password works again, from the flooding
                # address: told to wait at most one refill, it gets in
                waited = 0
                for _ in range(3):
                    async with s.post(base + "/login", data={"user": "alice", "password":
                                      PASSWORD}, allow_redirects=False) as r:
                        if r.status != 429:
                            break
                        waited += int(r.headers["Retry-After"])
                        await asyncio.sleep(int(r.headers["Retry-After"]))
                assert r.status == 303 and r.headers["Location"] == "/"
                assert waited <= math.ceil(REFILL_S)
        finally:
            await runner.cleanup()
    asyncio.run(check())


@pytest.mark.timeout(120)
def test_an_old_scrypt_hash_logs_in_and_is_upgraded(tmp_path):
    path = tmp_path / "users.json"
    old = hash_password(PASSWORD, n=2**14, r=8, p=1)   # what main stored before
    path.write_text(json.dumps({"v": 1, "users": {"alice": old}, "tokens": []}))
    path.chmod(0o600)

    async def check():
        runner, base = await _serve(build_app(_config(tmp_path)))
        try:
            async with _client() as s:
                async with s.post(base + "/login", data={"user": "alice", "password": PASSWORD},
                                  allow_redirects=False) as r:
                    assert r.status == 303 and r.headers["Location"] == "/"
                async with s.get(base + "/api/streams") as r:
                    assert r.status == 200     # the upgrade did not end the new session
        finally:
            await runner.cleanup()
    asyncio.run(check())
    new = json.loads(path.read_text())["users"]["alice"]
    assert (new["n"], new["r"], new["p"]) == (auth.SCRYPT_N, auth.SCRYPT_R, auth.SCRYPT_P)
    assert (new["n"], new["p"]) != (old["n"], old["p"]) and new["salt"] != old["salt"]
    assert check_password(new, PASSWORD) and not check_password(new, PASSWORD + "!")
    assert Credentials(path).check_user("alice", PASSWORD)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["auto", "always"])
def test_the_login_cookie_is_secure_behind_a_tls_proxy_when_configured(tmp_path, mode):
    Credentials(tmp_path / "users.json").add_user("alice", PASSWORD)

    async def check():
        runner, base = await _serve(build_app(_config(tmp_path, secure_cookies=mode)))
        try:
            async with _client() as s, s.post(
                    base + "/login", data={"user": "alice", "password": PASSWORD},
                    allow_redirects=False) as r:
                assert r.status == 303
                return r.headers["Set-Cookie"]
        finally:
            await runner.cleanup()
    cookie = asyncio.run(check())
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    # plain HTTP here: auto marks it Secure only for a TLS request; always does regardless
    assert ("Secure" in cookie.split("; ")) == (mode == "always")
    with pytest.raises(ValueError, match="auto or always"):
        _config(tmp_path, secure_cookies="sometimes")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_an_open_websocket_is_closed_when_its_login_ends(tmp_path):
    creds = Credentials(tmp_path / "users.json")
    for name in ("alice", "bob", "carol", "dave"):
        creds.add_user(name, PASSWORD)
    _, token = creds.new_token("ci")

    async def check():
        runner, base = await _serve(build_app(_config(tmp_path)))
        sessions = []
        try:
            async def page(user=None, headers=None):
                s = _client()
                sessions.append(s)
                if user:
                    async with s.post(base + "/login", data={"user": user,
                                      "password": PASSWORD}, allow_redirects=False) as r:
                        assert r.status == 303 and r.headers["Location"] == "/"
                ws = await s.ws_connect(base + "/ws", headers=headers or {})
                hello = json.loads((await ws.receive(timeout=10)).data)
                assert hello["type"] == "hello"
                return s, ws

            async def closed(ws):
                while True:
                    msg = await ws.receive(timeout=10)
                    if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                    aiohttp.WSMsgType.CLOSING):
                        return ws.close_code
                    assert msg.type == aiohttp.WSMsgType.TEXT, msg

            (alice, alice_ws), (_, bob_ws), (_, carol_ws), (_, dave_ws) = [
                await page(u) for u in ("alice", "bob", "carol", "dave")]
            _, token_ws = await page(headers={"Authorization": f"Bearer {token}"})
            _, basic_ws = await page(headers=_basic("bob", PASSWORD))

            async with alice.post(base + "/logout", allow_redirects=False) as r:
                assert r.status == 303
            assert await closed(alice_ws) == 1008              # logout: at once
            creds.remove("bob")                                # `vadstream users remove bob`
            assert await closed(bob_ws) == 1008
            assert await closed(basic_ws) == 1008
            creds.add_user("carol", PASSWORD + " new")         # a new password
            assert await closed(carol_ws) == 1008
            creds.remove("ci")                                 # the token removed
            assert await closed(token_ws) == 1008
            # dave's login still stands: his page still gets the status every second
            msg = await dave_ws.receive(timeout=10)
            assert msg.type == aiohttp.WSMsgType.TEXT and not dave_ws.closed
        finally:
            for s in sessions:
                await s.close()
            await runner.cleanup()
    asyncio.run(check())


def test_a_bucket_allows_a_burst_then_one_check_per_refill():
    now = [100.0]
    buckets = Buckets(burst=3, refill_s=6.0, clock=lambda: now[0], max_keys=2)
    for _ in range(3):
        assert buckets.wait("a") == 0
        buckets.take("a")
    assert buckets.wait("a") == pytest.approx(6.0) and buckets.wait("b") == 0
    now[0] += 4.5
    assert buckets.wait("a") == pytest.approx(1.5)
    buckets.give_back("a")                       # a check that passed
    assert buckets.wait("a") == 0
    buckets.take("a")
    now[0] += 6.0
    assert buckets.wait("a") == 0                # one earned back
    for key in ("b", "c", "d"):                  # beyond max_keys: the oldest go
        buckets.take(key)
    assert len(buckets._buckets) == 2
    with pytest.raises(ValueError, match="burst"):
        Buckets(burst=0)
