"""Reading the detector's topics: JSON Lines to a terminal, overlays to files or MP4."""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np
import zmq

from stream.wire.security import CurveClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Message:
    """One published message: its topic, JSON payload and, for overlays, the JPEG."""

    topic: str
    payload: dict
    jpeg: bytes | None = None


class Subscriber:
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
        self.socket = (context or zmq.Context.instance()).socket(zmq.SUB)
        self.socket.setsockopt(zmq.RCVHWM, hwm)
        self.socket.setsockopt(zmq.LINGER, 0)
        if curve is not None:
            curve.apply(self.socket)
        self.socket.connect(connect)
        for topic in topics or [""]:
            self.socket.setsockopt(zmq.SUBSCRIBE, topic.encode())

    def recv(self, timeout_ms: int = 200) -> Message | None:
        """The next message, or None after ``timeout_ms``; malformed ones are skipped."""
        if not self.socket.poll(timeout_ms):
            return None
        parts = self.socket.recv_multipart()
        try:
            payload = json.loads(parts[1]) if len(parts) > 1 else {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            log.warning("skipped a message on %r that is not JSON", parts[0][:64])
            return None
        return Message(parts[0].decode(errors="replace"), payload,
                       parts[2] if len(parts) > 2 else None)

    def close(self) -> None:
        self.socket.close()

    def __enter__(self) -> Subscriber:
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
        if msg.jpeg is not None and save_overlays is not None:
            name = f"{msg.payload.get('stream', 'stream')}_{int(msg.payload.get('seq', n)):08d}"
            (save_overlays / f"{name}.jpg").write_bytes(msg.jpeg)
        out.write(json.dumps({"topic": msg.topic, **msg.payload}) + "\n")
        out.flush()
        n += 1
    return n


def record(sub: Subscriber, stream: str, path: Path, fps: float, stop: threading.Event) -> int:
    """Write a stream's overlays to an MP4 until its end-of-stream or ``stop``.

    ``sub`` must be subscribed to ``overlay.<stream>`` and ``eos.<stream>``.

    Returns:
        Frames written.
    """
    writer = None
    frames = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        while not stop.is_set():
            msg = sub.recv()
            if msg is None:
                continue
            if msg.topic == f"eos.{stream}":
                break
            if msg.jpeg is None or msg.topic != f"overlay.{stream}":
                continue
            image = cv2.imdecode(np.frombuffer(msg.jpeg, np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                continue
            if writer is None:
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                         (image.shape[1], image.shape[0]))
                if not writer.isOpened():
                    raise OSError(f"cannot write video {path}: OpenCV has no MP4 writer here")
                size = image.shape[:2]
            if image.shape[:2] != size:
                image = cv2.resize(image, (size[1], size[0]))
            writer.write(image)
            frames += 1
    finally:
        if writer is not None:
            writer.release()
    return frames
