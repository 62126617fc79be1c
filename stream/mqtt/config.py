"""``mqtt:`` in ``configs/pipeline.yaml``: the bridge's one config dataclass, and the
broker URL it names."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import NamedTuple

from stream.mqtt.topics import COMMANDS

#: MQTT topic levels this bridge names (a prefix may hold several levels).
_TOPIC_PREFIX = re.compile(r"^[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-]+)*\Z")
_SCHEMES = {"mqtt": (1883, False), "mqtts": (8883, True)}


class Broker(NamedTuple):
    """Where the broker listens.

    Args:
        host: Host name or address.
        port: TCP port.
        tls: Whether the connection is TLS (``mqtts://``).
    """

    host: str
    port: int
    tls: bool


def parse_broker(url: str) -> Broker:
    """``mqtt://HOST[:PORT]`` (1883) or ``mqtts://HOST[:PORT]`` (TLS, 8883).

    Raises:
        ValueError: On another scheme, a user or password in the URL, or a bad port.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in _SCHEMES:
        raise ValueError(f"broker {url!r} is not mqtt://HOST[:PORT] or mqtts://HOST[:PORT] "
                         "(TLS), e.g. mqtt://127.0.0.1:1883")
    if "@" in rest:
        raise ValueError(f"broker {url!r} holds a user name: give it as username and the "
                         "password as password_file instead (they would show in `ps`)")
    default_port, tls = _SCHEMES[scheme]
    rest = rest.rstrip("/")
    host, colon, port = rest.rpartition(":") if not rest.endswith("]") else (rest, "", "")
    if not colon:
        host, port = rest, str(default_port)
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"broker {url!r}: expected a host and a port in 1..65535")
    return Broker(host, int(port), tls)


@dataclass(frozen=True)
class MqttConfig:
    """``mqtt:`` in ``configs/pipeline.yaml``, and the flags of ``vadstream mqtt``.

    Args:
        enabled: Whether ``vadstream run`` starts the bridge (it also needs a broker).
        broker: ``mqtt://HOST:PORT``, or ``mqtts://HOST:PORT`` for TLS ("" : no bridge).
        connect: The detector's topic endpoint ("" : the pipeline's ``detector.publish``,
            or tcp://127.0.0.1:5556 standalone).
        control: The detector's control endpoint, where threshold and detection commands
            go ("" : the pipeline's ``detector.control``, or tcp://127.0.0.1:5557 standalone).
        prefix: First topic level of everything the bridge publishes.
        discovery_prefix: Home Assistant's discovery prefix ("" : no discovery).
        client_id: The bridge's MQTT client id ("" : one the client library makes up).
        username: Broker user name ("" : anonymous).
        password_file: File holding the broker password (its first line).
        tls_ca: CA certificate file that the broker's certificate must chain to, for
            ``mqtts://`` ("" : the system's CAs).
        tls_cert: Client certificate file, for brokers that require one.
        tls_key: Its private key file.
        keepalive: Seconds between keep-alive pings.
        max_backoff: Longest wait, in seconds, between reconnection attempts (it starts
            at 1 s and doubles).
        score_interval: Least seconds between two scores published for a stream.
        offline_after: Seconds without a detector ``status`` after which every stream is
            reported offline.
        command_timeout: Seconds a command waits for the detector's answer.
        curve_key: This client's CURVE ``.key_secret`` (when the detector requires CURVE).
        curve_server: The detector's public ``.key``.
        commands: The MQTT commands acted on, of ``threshold``, ``detect``, ``model``
            (``<prefix>/<stream>/<command>/set``) and ``label``
            (``<prefix>/<stream>/event/label/set``); the others are not subscribed to and
            are ignored (logged). An empty list switches every command off.
    """

    enabled: bool = False
    broker: str = ""
    connect: str = ""
    control: str = ""
    prefix: str = "vadstream"
    discovery_prefix: str = "homeassistant"
    client_id: str = ""
    username: str = ""
    password_file: str = ""
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    keepalive: int = 30
    max_backoff: float = 30.0
    score_interval: float = 1.0
    offline_after: float = 5.0
    command_timeout: float = 5.0
    curve_key: str = ""
    curve_server: str = ""
    commands: tuple[str, ...] = COMMANDS

    def __post_init__(self) -> None:
        commands = tuple(self.commands)
        unknown = [c for c in commands if c not in COMMANDS]
        if unknown:
            raise ValueError(f"mqtt commands {unknown} unknown: pick from {list(COMMANDS)} "
                             "([]: none)")
        object.__setattr__(self, "commands", commands)
        if self.broker:
            parse_broker(self.broker)
        for key in ("prefix", "discovery_prefix"):
            value = getattr(self, key)
            if (value or key == "prefix") and not _TOPIC_PREFIX.fullmatch(value):
                raise ValueError(f"{key} {value!r} must be topic levels of letters, digits, "
                                 "'_' or '-' separated by '/' (no wildcards, no leading or "
                                 "trailing '/')")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("a TLS client certificate needs both tls_cert and tls_key")
        if self.password_file and not self.username:
            raise ValueError("password_file needs a username")
        positive = {"keepalive": self.keepalive, "max_backoff": self.max_backoff,
                    "offline_after": self.offline_after,
                    "command_timeout": self.command_timeout}
        for key, value in positive.items():
            if value <= 0:
                raise ValueError(f"{key} must be positive, got {value}")
        if self.score_interval < 0:
            raise ValueError(f"score_interval must be at least 0, got {self.score_interval}")

    @property
    def active(self) -> bool:
        """Whether ``vadstream run`` starts the bridge: enabled and a broker given."""
        return self.enabled and bool(self.broker)

    def to_argv(self, **values: str) -> list[str]:
        """The ``vadstream mqtt`` flags that give this config (``enabled`` aside), with
        ``values`` replacing fields (the endpoints the pipeline resolved)."""
        argv = []
        for f in dataclasses.fields(self):
            value = values.get(f.name, getattr(self, f.name))
            if f.name == "enabled" or value == f.default:
                continue
            flag = f"--{f.name.replace('_', '-')}"
            argv += [flag, *value] if isinstance(value, tuple) else [flag, str(value)]
        return argv

    def password(self) -> str | None:
        """The broker password from ``password_file`` (None without one).

        Raises:
            FileNotFoundError: If the file is missing.
        """
        if not self.password_file:
            return None
        try:
            with open(self.password_file) as f:
                return f.readline().rstrip("\r\n")
        except FileNotFoundError:
            raise FileNotFoundError(f"MQTT password_file {self.password_file} not found; "
                                    "write the broker password on its first line") from None
