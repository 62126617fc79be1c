"""The dashboard's settings: the arguments of ``vadstream serve``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stream.adapt import ADAPTED_DIR
from stream.defaults import (
    CONTROL_ENDPOINT,
    DASHBOARD_HTTP,
    EVENTS_DB,
    SUPERVISOR_ENDPOINT,
    TOPICS_ENDPOINT,
)

#: The credentials file's name beside the events store (``auth_file`` "").
AUTH_FILE = "dashboard-users.json"


def auth_path(auth_file: str, events_db: str) -> Path:
    """The credentials file: ``auth_file``, or :data:`AUTH_FILE` beside ``events_db``."""
    return Path(auth_file) if auth_file else Path(events_db).parent / AUTH_FILE


def split_host_port(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) as ``(host, port)``.

    Raises:
        ValueError: If the port is missing or not a number in 0..65535.
    """
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--http {address!r} is not HOST:PORT, e.g. {DASHBOARD_HTTP}")
    return host.strip("[]") or "127.0.0.1", int(port)


@dataclass(frozen=True)
class ServeConfig:
    """Where the dashboard listens and reads, and how much it keeps.

    Args:
        connect: The detector's topic endpoint (its ``--publish``).
        http: ``HOST:PORT`` the web server listens on.
        events_db: The detector's events store (its ``--events-db``), read only.
        history_s: Seconds of scores kept per stream for the chart.
        clip_before: Overlay frames kept from before each event seen live.
        clip_after: Overlay frames kept after its end.
        clip_frames: Most frames kept per event.
        clip_budget_mb: Memory the frames of all events may take (oldest go first).
        curve_key: This client's CURVE ``.key_secret`` (when the detector requires CURVE).
        curve_server: The detector's public ``.key``.
        control: The detector's control endpoint (its ``detector.control``): where the
            API's threshold, detect, model and mask changes go; "": none.
        supervisor: ``vadstream run``'s ``supervisor.control``: where cameras are added
            and removed; "": none.
        auth_file: Users and tokens of the login (``vadstream users``); "":
            ``dashboard-users.json`` beside ``events_db``. A login is needed whenever it
            holds any, and always when ``http`` is beyond loopback.
        secure_cookies: When the login cookie is marked ``Secure`` (sent over HTTPS only):
            ``auto``: when the login itself came over TLS; ``always``: behind a proxy that
            ends TLS (the dashboard then sees plain HTTP; forwarded headers are not
            trusted, as anyone can send them).
        adapt_dir: The adaptations' folder (``adapt.out_dir``): ``/api/streams/<id>/adapt``
            reads each stream's progress and history there.
    """

    connect: str = TOPICS_ENDPOINT
    http: str = DASHBOARD_HTTP
    events_db: str = EVENTS_DB
    history_s: float = 300.0
    clip_before: int = 20
    clip_after: int = 20
    clip_frames: int = 200
    clip_budget_mb: float = 64.0
    curve_key: str = ""
    curve_server: str = ""
    control: str = CONTROL_ENDPOINT
    supervisor: str = SUPERVISOR_ENDPOINT
    auth_file: str = ""
    secure_cookies: str = "auto"
    adapt_dir: str = ADAPTED_DIR

    def __post_init__(self) -> None:
        split_host_port(self.http)
        if self.secure_cookies not in ("auto", "always"):
            raise ValueError(f"secure_cookies {self.secure_cookies!r} is not auto or always "
                             "(always: behind a proxy that ends TLS)")
        if self.history_s <= 0:
            raise ValueError(f"history_s must be positive, got {self.history_s}")

    @property
    def host(self) -> str:
        return split_host_port(self.http)[0]

    @property
    def port(self) -> int:
        return split_host_port(self.http)[1]

    @property
    def auth_path(self) -> Path:
        """The credentials file (see ``auth_file``)."""
        return auth_path(self.auth_file, self.events_db)
