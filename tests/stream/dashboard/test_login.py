"""The dashboard's login: set up by `vadstream users`, enforced on real HTTP."""

import asyncio
import base64
import json
import stat

import aiohttp
import pytest
from aiohttp import web

from stream.dashboard.app import build_app
from stream.dashboard.auth import Credentials, check_password, hash_password
from stream.dashboard.config import ServeConfig
from tests.conftest import reserve_port, vadstream_run

PASSWORD = "correct horse battery"


def _basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_passwords_are_salted_scrypt_hashes():
    a, b = hash_password(PASSWORD), hash_password(PASSWORD)
    assert a["scheme"] == "scrypt" and a["salt"] != b["salt"] and a["hash"] != b["hash"]
    assert check_password(a, PASSWORD) and not check_password(a, PASSWORD + "!")


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_beyond_loopback_without_credentials_serve_refuses_to_start(tmp_path):
    db = tmp_path / "events.sqlite3"
    out = vadstream_run("serve", "--http", f"0.0.0.0:{reserve_port()}", "--events-db",
                        str(db), timeout=60)
    assert out.returncode == 2
    assert "vadstream users add NAME" in out.stderr and "vadstream users token" in out.stderr
    assert str(tmp_path / "dashboard-users.json") in out.stderr


async def _serve(app: web.Application):
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_users_and_tokens_guard_every_route_beyond_loopback(tmp_path):
    db = tmp_path / "events.sqlite3"
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n")
    added = vadstream_run("users", "add", "alice", "--password-file", str(secret),
                          "--events-db", str(db))
    assert added.returncode == 0, added.stderr
    made = vadstream_run("users", "token", "--events-db", str(db))
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    path = tmp_path / "dashboard-users.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert PASSWORD not in text and token not in text
    stored = json.loads(text)
    assert set(stored["users"]) == {"alice"} and len(stored["tokens"]) == 1
    listed = vadstream_run("users", "list", "--events-db", str(db))
    assert "user  alice" in listed.stdout and "token token-1" in listed.stdout

    # Listening beyond loopback (served here on loopback, judged by its --http): the
    # control endpoints are off, so a call that passes the login is answered 503.
    config = ServeConfig(http="0.0.0.0:8080", events_db=str(db), control="", supervisor="",
                         connect=f"tcp://127.0.0.1:{reserve_port()}")

    async def check():
        runner, base = await _serve(build_app(config))
        try:
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
                async def status(method, path, headers=None, **kw):
                    async with s.request(method, base + path, headers=headers or {},
                                         allow_redirects=False, **kw) as r:
                        return r.status, r.headers, await r.read()

                change = ("POST", "/api/streams/cam/threshold")
                body = {"json": {"value": 3.0}}
                assert (await status(*change, **body))[0] == 401
                assert (await status("DELETE", "/api/streams/cam"))[0] == 401
                for path in ("/api/streams", "/api/events", "/metrics", "/ws"):
                    assert (await status("GET", path))[0] == 401, path
                code, headers, _ = await status("GET", "/")
                assert code == 303 and headers["Location"] == "/login"
                assert (await status("GET", "/login"))[0] == 200
                assert (await status(*change, _basic("alice", "wrong password"), **body)
                        )[0] == 401
                assert (await status(*change, {"Authorization": "Bearer nope"}, **body)
                        )[0] == 401
                # right credentials: through the login, to the (absent) detector
                code, _, raw = await status(*change, _basic("alice", PASSWORD), **body)
                assert code == 503 and b"--control" in raw
                bearer = {"Authorization": f"Bearer {token}"}
                assert (await status(*change, bearer, **body))[0] == 503
                assert (await status("GET", "/metrics", bearer))[0] == 200
                assert (await status("GET", "/api/streams", _basic("alice", PASSWORD))
                        )[0] == 200
                # a page of another site cannot post, even with a login; nor send forms
                assert (await status(*change, {**bearer, "Origin": "http://evil.example"},
                                     **body))[0] == 403
                assert (await status(*change, bearer, data="value=3"))[0] == 415
                # the browser's form: a session cookie
                code, headers, _ = await status("POST", "/login", data={
                    "user": "alice", "password": "wrong password"})
                assert code == 303 and headers["Location"] == "/login?failed=1"
                code, headers, _ = await status("POST", "/login", data={
                    "user": "alice", "password": PASSWORD})
                assert code == 303 and headers["Location"] == "/"
                cookie = headers["Set-Cookie"]
                assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
                assert (await status("GET", "/"))[0] == 200
                assert (await status(*change, **body))[0] == 503
                await status("POST", "/logout")
                assert (await status("GET", "/api/streams"))[0] == 401
        finally:
            await runner.cleanup()
    asyncio.run(check())


@pytest.mark.timeout(60)
def test_on_loopback_the_dashboard_is_open_until_credentials_are_set_up(tmp_path):
    auth = tmp_path / "users.json"
    config = ServeConfig(http="127.0.0.1:0", events_db=str(tmp_path / "e.db"), control="",
                         supervisor="", auth_file=str(auth),
                         connect=f"tcp://127.0.0.1:{reserve_port()}")

    async def check():
        runner, base = await _serve(build_app(config))
        try:
            async with aiohttp.ClientSession() as s:
                async with s.get(base + "/api/streams") as r:
                    assert r.status == 200
                async with s.post(base + "/api/streams/cam/detect", json={"on": True}) as r:
                    assert r.status == 503
                # set up while it runs: enforced from the next request on
                Credentials(auth).new_token("ci")
                async with s.get(base + "/api/streams") as r:
                    assert r.status == 401
        finally:
            await runner.cleanup()
    asyncio.run(check())


@pytest.mark.timeout(60)
def test_a_browser_session_ends_when_its_user_is_removed_or_gets_a_new_password(tmp_path):
    auth = tmp_path / "users.json"
    creds = Credentials(auth)
    creds.add_user("alice", PASSWORD)
    creds.add_user("bob", PASSWORD)
    config = ServeConfig(http="127.0.0.1:0", events_db=str(tmp_path / "e.db"), control="",
                         supervisor="", auth_file=str(auth),
                         connect=f"tcp://127.0.0.1:{reserve_port()}")

    async def check():
        runner, base = await _serve(build_app(config))
        try:
            async def session(user):
                s = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
                async with s.post(base + "/login", data={"user": user, "password": PASSWORD},
                                  allow_redirects=False) as r:
                    assert r.status == 303 and r.headers["Location"] == "/"
                return s

            async def code(s):
                async with s.get(base + "/api/streams", allow_redirects=False) as r:
                    return r.status

            alice, bob = await session("alice"), await session("bob")
            try:
                assert await code(alice) == 200 and await code(bob) == 200
                creds.remove("alice")                      # `vadstream users remove alice`
                creds.add_user("bob", PASSWORD + " new")   # a new password for bob
                assert await code(alice) == 401 and await code(bob) == 401
            finally:
                await alice.close()
                await bob.close()
        finally:
            await runner.cleanup()
    asyncio.run(check())


@pytest.mark.timeout(60)
def test_without_a_login_only_requests_for_a_loopback_name_are_answered(tmp_path):
    # DNS rebinding: a page of evil.example whose name then resolves to 127.0.0.1 sends
    # same-origin requests (Host and Origin both evil.example) to the open dashboard.
    config = ServeConfig(http="127.0.0.1:0", events_db=str(tmp_path / "e.db"), control="",
                         supervisor="", auth_file=str(tmp_path / "users.json"),
                         connect=f"tcp://127.0.0.1:{reserve_port()}")

    async def check():
        runner, base = await _serve(build_app(config))
        rebound = {"Host": "evil.example:8080", "Origin": "http://evil.example:8080"}
        try:
            async with aiohttp.ClientSession() as s:
                async with s.post(base + "/api/streams/cam/detect", json={"on": False},
                                  headers=rebound) as r:
                    assert r.status == 403 and "vadstream users" in (await r.json())["error"]
                async with s.get(base + "/api/streams", headers=rebound) as r:
                    assert r.status == 403
                for host in ("localhost:8080", "127.0.0.1", "[::1]:8080"):
                    async with s.get(base + "/api/streams", headers={"Host": host}) as r:
                        assert r.status == 200, host
                async with s.post(base + "/api/streams/cam/detect", json={"on": False}) as r:
                    assert r.status == 503   # through, to the (absent) detector
        finally:
            await runner.cleanup()
    asyncio.run(check())
