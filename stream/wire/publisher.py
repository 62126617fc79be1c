"""The detector's outbound socket: topics ``alert.*``, ``score.*``, ``overlay.*``, ``status``."""

from __future__ import annotations

import json

import zmq

from stream.wire.security import CurveServer


class Publisher:
    """One XPUB socket; every message's first frame is its topic.

    XPUB (rather than PUB) lets the detector see which topics have subscribers, so it
    renders and encodes overlays only while someone wants them. Slow subscribers never
    slow the detector: messages beyond a subscriber's high-water mark are dropped.

    Args:
        bind: Endpoint to bind, e.g. ``tcp://127.0.0.1:5556``.
        hwm: Messages queued per subscriber before dropping.
        context: ZeroMQ context.
        curve: CURVE server keys: only admitted clients may subscribe.
    """

    def __init__(self, bind: str, hwm: int = 1000, context: zmq.Context | None = None,
                 curve: CurveServer | None = None) -> None:
        self.socket = (context or zmq.Context.instance()).socket(zmq.XPUB)
        self.socket.setsockopt(zmq.SNDHWM, hwm)
        self.socket.setsockopt(zmq.LINGER, 500)
        if curve is not None:
            curve.apply(self.socket)
        self.socket.bind(bind)
        self.endpoint = bind
        self._subscriptions: set[bytes] = set()

    def read_subscriptions(self) -> None:
        """Take in pending (un)subscriptions; call when the socket is readable."""
        while True:
            try:
                msg = self.socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if msg[:1] == b"\x01":
                self._subscriptions.add(msg[1:])
            elif msg[:1] == b"\x00":
                self._subscriptions.discard(msg[1:])

    @property
    def subscriptions(self) -> list[str]:
        """Topic prefixes someone subscribes to."""
        return sorted(p.decode(errors="replace") for p in self._subscriptions)

    def wants(self, topic: str) -> bool:
        """Whether any subscriber's prefix matches ``topic``."""
        t = topic.encode()
        return any(t.startswith(prefix) for prefix in self._subscriptions)

    def publish_json(self, topic: str, payload: dict) -> None:
        """Send ``[topic, JSON]``."""
        self.socket.send_multipart([topic.encode(), json.dumps(payload).encode()])

    def close(self) -> None:
        """Close the socket."""
        self.socket.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
