"""Reading the detector's topics: typed messages, JSON Lines to a terminal, overlays to
files or MP4.

:class:`Subscriber` (blocking) and :class:`AsyncSubscriber` (asyncio, the dashboard's)
both read through :func:`stream.wire.topics.decode_topic`; a message it refuses is
skipped and logged (the first three, then every 1000th), never passed on.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np
import zmq
import zmq.asyncio

from stream.wire.security import CurveClient
from stream.wire.topics import EosMessage, OverlayMessage, TopicError, TopicMessage, decode_topic

log = logging.getLogger(__name__)


def _sub_socket(context: zmq.Context, connect: str, topics: list[str], hwm: int,
                curve: CurveClient | None) -> zmq.Socket:
    socket = context.socket(zmq.SUB)
    socket.setsockopt(zmq.RCVHWM, hwm)
    socket.setsockopt(zmq.LINGER, 0)
    if curve is not None:
        curve.apply(socket)
    socket.connect(connect)
    for topic in topics or [""]:
        socket.setsockopt(zmq.SUBSCRIBE, topic.encode())
    return socket


class _Reader:
    """The decoding both subscribers share: typed messages, bad ones skipped and counted."""

    def __init__(self) -> None:
        self.skipped = 0

    def _decode(self, parts: list) -> TopicMessage | None:
        try:
            return decode_topic(parts)
        except TopicError as err:
            self.skipped += 1
            if self.skipped <= 3 or self.skipped % 1000 == 0:
                log.warning("skipped a topic message (%d so far): %s", self.skipped, err)
            return None


class Subscriber(_Reader):
    """A SUB socket on the detector's publisher.

    Args:
        connect: Publisher endpoint, e.g. ``tcp://127.0.0.1:5556``.
        topics: Topic prefixes (``alert``, ``score.cam1``, ``overlay``, ``status``; "" for all).
        hwm: Messages queued before this subscriber drops (the detector never waits).
        context: ZeroMQ context.
        curve: CURVE keys, when the detector requires them.
    """

    def __init__(self, connect: str, topics: list[str], hwm: int = 10000,
                 context: zmq.Context | None = None, curve: CurveClient | None = None) -> None:
        super().__init__()
        self.socket = _sub_socket(context or zmq.Context.instance(), connect, topics, hwm,
                                  curve)

    def recv(self, timeout_ms: int = 200) -> TopicMessage | None:
        """The next message, or None after ``timeout_ms`` or for one that was skipped."""
        if not self.socket.poll(timeout_ms):
            return None
        return self._decode(self.socket.recv_multipart())

    def close(self) -> None:
        self.socket.close()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncSubscriber(_Reader):
    """A SUB socket read with ``await``, on its own asyncio ZeroMQ context.

    Args:
        connect: Publisher endpoint.
        topics: Topic prefixes ("" for all).
        hwm: Messages queued before this subscriber drops.
        curve: CURVE keys, when the detector requires them.
    """

    def __init__(self, connect: str, topics: list[str], hwm: int = 10000,
                 curve: CurveClient | None = None) -> None:
        super().__init__()
        self._context = zmq.asyncio.Context()
        self.socket = _sub_socket(self._context, connect, topics, hwm, curve)

    async def recv(self) -> TopicMessage | None:
        """The next message (waiting for it), or None for one that was skipped."""
        return self._decode(await self.socket.recv_multipart())

    def close(self) -> None:
        self.socket.close()
        self._context.term()

    def __enter__(self) -> AsyncSubscriber:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def print_messages(sub: Subscriber, out: TextIO, stop: threading.Event,
                   save_overlays: Path | None = None, count: int = 0) -> int:
    """Print every message as one JSON line, its topic under ``"topic"``; save overlay JPEGs.

    Args:
        sub: Subscriber.
        out: Where the lines go.
        stop: Ends the loop.
        save_overlays: Folder for overlay JPEGs (``<stream>_<seq>.jpg``).
        count: Stop after this many messages (0: never).

    Returns:
        Messages printed.
    """
    if save_overlays is not None:
        save_overlays.mkdir(parents=True, exist_ok=True)
    n = 0
    while not stop.is_set() and (not count or n < count):
        msg = sub.recv()
        if msg is None:
            continue
        if isinstance(msg, OverlayMessage) and save_overlays is not None:
            (save_overlays / f"{msg.stream}_{msg.seq:08d}.jpg").write_bytes(msg.jpeg)
        out.write(json.dumps({"topic": msg.topic, **msg.to_dict()}) + "\n")
        out.flush()
        n += 1
    return n


def record(sub: Subscriber, stream: str, path: Path, fps: float, stop: threading.Event) -> int:
    """Write a stream's overlays to an H.264 MP4 (:class:`stream.video.Mp4Writer`) until
    its end-of-stream or ``stop``.

    ``sub`` must be subscribed to ``overlay.<stream>`` and ``eos.<stream>``.

    Returns:
        Frames written.
    """
    from stream.video import Mp4Writer

    writer = None
    try:
        while not stop.is_set():
            msg = sub.recv()
            if msg is None:
                continue
            if isinstance(msg, EosMessage) and msg.stream == stream:
                break
            if not isinstance(msg, OverlayMessage) or msg.stream != stream:
                continue
            image = cv2.imdecode(np.frombuffer(msg.jpeg, np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                continue
            if writer is None:
                writer = Mp4Writer(path, fps)
            writer.write(image)
    finally:
        if writer is not None:
            writer.close()
    return 0 if writer is None else writer.frames
