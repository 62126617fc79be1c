"""A real mosquitto on loopback for the bridge's tests, and an MQTT client that records
what it receives."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.conftest import reserve_port, wait_for

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"

# CI installs mosquitto (.ci/run), so there a missing one fails the tests instead.
need_mosquitto = pytest.mark.skipif(
    not Path(MOSQUITTO).is_file() and os.environ.get("CI") != "true",
    reason="Debian's mosquitto is not installed here; `make setup` as root and .ci/run "
    "install it (apt-get install mosquitto)")


class Mosquitto:
    """A mosquitto process on ``127.0.0.1:port`` with its own config in ``folder``;
    stopped and started again on the same port, it keeps nothing (no persistence).

    Args:
        folder: Where its config and log go.
        users: ``{user: password}``: only these may connect (None: anonymous).
        tls: ``(ca, cert, key)`` files: a TLS listener.
    """

    def __init__(self, folder: Path, users: dict[str, str] | None = None,
                 tls: tuple[Path, Path, Path] | None = None) -> None:
        self.port = reserve_port()
        self.folder = folder
        self.log = folder / "mosquitto.log"
        self.proc: subprocess.Popen | None = None
        lines = [f"listener {self.port} 127.0.0.1", f"user {getpass.getuser()}",
                 "persistence false", "log_dest stderr", "log_type all"]
        if users:
            passwords = folder / "passwords"
            passwords.touch(mode=0o600)
            for user, password in users.items():
                subprocess.run([MOSQUITTO_PASSWD, "-b", str(passwords), user, password],
                               check=True, capture_output=True)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        if tls:
            ca, cert, key = tls
            lines += [f"cafile {ca}", f"certfile {cert}", f"keyfile {key}"]
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.url = f"{'mqtts' if tls else 'mqtt'}://127.0.0.1:{self.port}"

    def start(self) -> Mosquitto:
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=log,
                                         stderr=subprocess.STDOUT)

        def listening():
            if self.proc.poll() is not None:
                raise AssertionError(f"mosquitto exited with code {self.proc.returncode}: "
                                     f"{self.log.read_text()[-2000:]}")
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0
        wait_for(listening, 20, f"mosquitto listening on port {self.port}")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()   # a crash, not a goodbye: clients see the connection drop
            self.proc.wait(10)


class Recorder:
    """An MQTT client subscribed to ``topics`` that keeps every message, reconnecting (and
    resubscribing) by itself.

    Args:
        broker: The broker.
        topics: Topic filters.
        username: User (with ``password``), for a broker that needs one.
        tls_ca: CA file, for a TLS broker.
    """

    def __init__(self, broker: Mosquitto, topics: list[str], username: str | None = None,
                 password: str | None = None, tls_ca: Path | None = None) -> None:
        self.topics = topics
        self.messages: list[mqtt.MQTTMessage] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        if username:
            self.client.username_pw_set(username, password)
        if tls_ca:
            self.client.tls_set(ca_certs=str(tls_ca))
        self.client.reconnect_delay_set(1, 2)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect_async("127.0.0.1", broker.port, 10)
        self.client.loop_start()

    def _on_connect(self, client, _userdata, _flags, reason, _props) -> None:
        if not reason.is_failure:
            client.subscribe([(t, 1) for t in self.topics])

    def _on_message(self, _client, _userdata, message) -> None:
        with self._lock:
            self.messages.append(message)

    def mark(self) -> int:
        """How many messages came so far (for :meth:`since`)."""
        with self._lock:
            return len(self.messages)

    def since(self, mark: int = 0, topic: str | None = None) -> list[mqtt.MQTTMessage]:
        """Messages after ``mark``, on ``topic`` (None: all)."""
        with self._lock:
            return [m for m in self.messages[mark:] if topic is None or m.topic == topic]

    def wait(self, topic: str, payload: bytes | None = None, mark: int = 0,
             timeout: float = 30, what: str = "") -> mqtt.MQTTMessage:
        """The first message on ``topic`` after ``mark`` (with ``payload``, when given)."""
        def found():
            return next((m for m in self.since(mark, topic)
                         if payload is None or m.payload == payload), None)
        return wait_for(found, timeout, what or f"{topic} {payload!r} on MQTT")

    def publish(self, topic: str, payload: str | bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate for 127.0.0.1 that it signed: ``(ca, cert, key)``."""
    ca, ca_key = folder / "ca.pem", folder / "ca.key"
    cert, key, csr = folder / "server.pem", folder / "server.key", folder / "server.csr"
    ext = folder / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    run = [
        [OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=vadstream test CA", "-keyout", str(ca_key), "-out", str(ca)],
        [OPENSSL, "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
         "-keyout", str(key), "-out", str(csr)],
        [OPENSSL, "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
         "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert)],
    ]
    for argv in run:
        subprocess.run(argv, check=True, capture_output=True, timeout=60)
    for path in (ca, cert, key):
        path.chmod(0o644)
    return ca, cert, key


def wait_exit(proc: subprocess.Popen, timeout: float = 15) -> int:
    """The exit code of ``proc``, once it ends."""
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"process {proc.pid} still runs after {timeout} s") from None
