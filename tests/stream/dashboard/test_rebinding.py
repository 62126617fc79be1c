"""Loopback is ``localhost`` or a loopback address, nothing else: a name that merely
starts with ``127.`` (DNS rebinding) reaches neither the open dashboard nor its write API,
and does not let ``serve`` listen without a login."""

from __future__ import annotations

import http.client
import json
import re
import subprocess

import pytest

from stream.wire.endpoints import is_loopback, is_loopback_host
from tests.conftest import Lines, reserve_port, stop, vadstream, vadstream_run

pytestmark = pytest.mark.slow   # starts processes


def test_only_localhost_and_loopback_addresses_are_loopback():
    for host in ("localhost", "LocalHost", "127.0.0.1", "127.3.2.1", "::1", "[::1]"):
        assert is_loopback_host(host), host
    for host in ("127.attacker.example", "127.0.0.1.nip.io", "127.1", "localhost.evil",
                 "0.0.0.0", "::", "10.0.0.1", "", "evil.example"):
        assert not is_loopback_host(host), host
    assert is_loopback("tcp://127.0.0.1:5555") and is_loopback("ipc:///tmp/x")
    assert not is_loopback("tcp://127.attacker.example:5555")


def _request(port: int, method: str, path: str, host: str, body: dict | None = None
             ) -> tuple[int, str]:
    """``curl -H 'Host: HOST' -H 'Origin: http://HOST' http://127.0.0.1:PORT/PATH``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host)
        conn.putheader("Origin", f"http://{host}")
        data = b"" if body is None else json.dumps(body).encode()
        if body is not None:
            conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(len(data)))
        conn.endheaders(data)
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


@pytest.mark.timeout(120)
def test_serve_refuses_a_rebound_127_name_on_every_route(tmp_path):
    port = reserve_port()
    proc = vadstream("serve", "--http", f"127.0.0.1:{port}",
                     "--connect", f"tcp://127.0.0.1:{reserve_port()}",
                     "--control", f"tcp://127.0.0.1:{reserve_port()}",
                     "--supervisor", f"tcp://127.0.0.1:{reserve_port()}",
                     "--events-db", str(tmp_path / "events.sqlite3"),
                     stdout=subprocess.PIPE, text=True)
    try:
        line = Lines(proc.stdout).next(60, "the dashboard's address")
        assert re.match(rf"dashboard: http://127\.0\.0\.1:{port}/ ", line or ""), line
        requests = [("GET", "/api/streams", None), ("GET", "/metrics", None),
                    ("POST", "/api/streams", {"id": "evil", "source": "/etc/passwd"}),
                    ("POST", "/api/streams/cam1/model", {"path": "/etc/passwd"})]
        for host in (f"127.attacker.example:{port}", f"127.0.0.1.nip.io:{port}"):
            for method, path, body in requests:
                status, text = _request(port, method, path, host, body)
                assert status in (403, 421), (host, method, path, status, text)
                assert "vadstream users add" in text, text
        # the same requests for this machine's own names are answered (the GETs)
        for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
            assert _request(port, "GET", "/api/streams", host)[0] == 200
            assert _request(port, "GET", "/metrics", host)[0] == 200
    finally:
        stop(proc)
    assert proc.returncode == 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("host", ["127.x.example", "127.0.0.1.nip.io"])
def test_serve_on_a_127_name_needs_a_login_like_any_other_name(tmp_path, host):
    out = vadstream_run("serve", "--http", f"{host}:{reserve_port()}", "--events-db",
                        str(tmp_path / "events.sqlite3"), timeout=60)
    assert out.returncode == 2, out.stderr
    assert "beyond this machine" in out.stderr and "vadstream users add NAME" in out.stderr
