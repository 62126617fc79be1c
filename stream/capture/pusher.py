"""The capture process: read a source and PUSH its frames to the detector."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import zmq

from stream.capture.sources import URL_SCHEMES, FrameSource, open_source
from stream.wire.protocol import check_stream_id, encode_eos, encode_frame
from stream.wire.security import CurveClient

if TYPE_CHECKING:
    from models.contract import InputContract

log = logging.getLogger(__name__)


class FramePusher:
    """A PUSH socket that never blocks the read loop.

    Frames are queued up to a small high-water mark and only towards a connected
    detector (``ZMQ_IMMEDIATE``); beyond that, :meth:`send` drops and says so.

    Args:
        connect: Detector endpoint, e.g. ``tcp://127.0.0.1:5555``.
        hwm: Frames queued before sends are dropped.
        linger_ms: How long ``close()`` may wait to deliver what is queued.
        context: ZeroMQ context (default: one of its own).
        curve: CURVE keys, when the detector requires them.
    """

    def __init__(self, connect: str, hwm: int = 8, linger_ms: int = 30000,
                 context: zmq.Context | None = None, curve: CurveClient | None = None) -> None:
        # An own context unless one is given: close() then terminates it, so libzmq is
        # done with every zero-copy frame buffer before the interpreter frees them.
        self._own_context = context is None
        self._context = context or zmq.Context()
        self._socket = self._context.socket(zmq.PUSH)
        self._socket.setsockopt(zmq.SNDHWM, hwm)
        self._socket.setsockopt(zmq.IMMEDIATE, 1)
        self._socket.setsockopt(zmq.LINGER, linger_ms)
        if curve is not None:
            curve.apply(self._socket)
        self._socket.connect(connect)
        self.endpoint = connect

    def wait_connected(self, timeout_s: float) -> bool:
        """Wait until a detector is connected and can take a frame."""
        return bool(self._socket.poll(int(timeout_s * 1000), zmq.POLLOUT))

    def send(self, parts: list) -> bool:
        """Queue one message without blocking; False if it was dropped."""
        try:
            self._socket.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
            return True
        except zmq.Again:
            return False

    def send_blocking(self, parts: list, timeout_s: float) -> bool:
        """Send one message, waiting up to ``timeout_s`` for room (end-of-stream marker)."""
        if not self._socket.poll(int(timeout_s * 1000), zmq.POLLOUT):
            return False
        return self.send(parts)

    def close(self) -> None:
        """Close the socket (waits up to ``linger_ms`` to deliver queued frames)."""
        self._socket.close()
        if self._own_context:
            self._context.term()

    def __enter__(self) -> FramePusher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Pacer:
    """Sleeps so that successive ticks are ``1/fps`` apart, without drift (fps 0: no wait)."""

    def __init__(self, fps: float) -> None:
        self._period = 1.0 / fps if fps > 0 else 0.0
        self._next = time.monotonic()

    def wait(self, stop: threading.Event | None = None) -> None:
        if not self._period:
            return
        self._next += self._period
        delay = self._next - time.monotonic()
        if delay > 0:
            if stop is not None:
                stop.wait(delay)
            else:
                time.sleep(delay)
        elif delay < -self._period:
            self._next = time.monotonic()  # fell behind: do not burst to catch up


@dataclass
class CaptureStats:
    """What a capture run did."""

    read: int = 0
    sent: int = 0
    dropped: int = 0
    reconnects: int = 0


def backoff_delay(attempt: int, max_backoff_s: float) -> float:
    """Seconds to wait before reconnection attempt ``attempt`` (0, 1, ...): 0.5 s doubling."""
    return min(max_backoff_s, 0.5 * 2 ** min(attempt, 16))


def open_with_retry(spec: str, stop: threading.Event, fps: float | None = None,
                    timeout_s: float = 10.0, max_backoff_s: float = 30.0
                    ) -> FrameSource | None:
    """Open a capture's source; a camera or stream URL that is down is retried with
    backoff (:func:`backoff_delay`) until it answers or ``stop`` is set.

    Args:
        spec: Camera index, URL, video file or folder (as ``open_source`` takes it).
        stop: Set to give up waiting.
        fps: Replay rate, as ``open_source`` takes it.
        timeout_s: Seconds a stream URL may give no frames (``open_source``'s watchdog).
        max_backoff_s: Longest wait between attempts.

    Returns:
        The open source, or None when ``stop`` was set first.

    Raises:
        OSError: A file or folder that cannot be opened (never retried).
    """
    live = spec.isdigit() or spec.lower().startswith(URL_SCHEMES)
    attempt = 0
    while not stop.is_set():
        try:
            return open_source(spec, fps=fps, timeout_s=timeout_s)
        except OSError as err:
            if not live:
                raise
            delay = backoff_delay(attempt, max_backoff_s)
            log.warning("%s; retrying in %.1f s (attempt %d)", err, delay, attempt + 1)
            attempt += 1
            stop.wait(delay)
    return None


def _reconnect(source: FrameSource, stream: str, attempt: int, max_backoff_s: float,
               stop: threading.Event) -> None:
    """Wait (exponential backoff) and reopen a live source that stopped delivering."""
    delay = backoff_delay(attempt, max_backoff_s)
    log.warning("%s: %s stopped delivering; reconnecting in %.1f s (attempt %d)", stream,
                source.name, delay, attempt + 1)
    if stop.wait(delay):
        return
    try:
        source.rewind()
        log.info("%s: reconnected to %s", stream, source.name)
    except OSError as err:
        log.warning("%s: %s", stream, err)


def run_capture(source: FrameSource, stream: str, pusher: FramePusher, encoding: str = "raw",
                fps: float | None = None, loop: bool = False, wait_s: float = 10.0,
                stop: threading.Event | None = None, max_backoff_s: float = 30.0,
                fit: InputContract | None = None) -> CaptureStats:
    """Read ``source`` and push every frame until it ends (or ``stop`` is set).

    Args:
        source: Frame source.
        stream: Stream id.
        pusher: Socket to push on.
        encoding: ``raw`` or ``jpeg``.
        fps: Replay rate (None: the source's own; 0: as fast as possible). Live sources
            are never paced.
        loop: Replay a finite source forever.
        wait_s: For a finite source, how long to wait for the detector before the first
            frame (frames are dropped, not queued, while none is connected).
        stop: Event that ends the loop.
        max_backoff_s: Longest wait between reconnection attempts of a live source that
            stopped delivering (cameras and stream URLs are never given up on).
        fit: Send each frame fitted to this model input contract (greyed and resized:
            :meth:`models.contract.InputContract.fit`), not as read.

    Returns:
        Counts of frames read, sent and dropped.
    """
    check_stream_id(stream)
    stop = stop or threading.Event()
    stats = CaptureStats()
    rate = 0.0 if source.live else (source.fps if fps is None else fps) or 0.0
    if not source.live and not pusher.wait_connected(wait_s):
        log.warning("no detector at %s after %.0f s; frames are dropped until one connects",
                    pusher.endpoint, wait_s)
    pacer = Pacer(rate)
    last_report = time.monotonic()
    attempt = 0
    while not stop.is_set():
        item = source.read()
        if item is None and source.live:
            _reconnect(source, stream, attempt, max_backoff_s, stop)
            attempt += 1
            stats.reconnects += 1
            continue
        if item is None:
            if loop:
                source.rewind()
                item = source.read()
            if item is None:
                break
        attempt = 0
        image = item.image if fit is None else fit.fit(item.image)
        parts = encode_frame(stream, stats.read, time.time(), image, encoding,
                             clip=item.clip, frame=item.index,
                             reconnects=stats.reconnects if source.live else None)
        stats.read += 1
        if pusher.send(parts):
            stats.sent += 1
        else:
            stats.dropped += 1
        now = time.monotonic()
        if now - last_report >= 10:
            log.info("%s: %d frames read, %d sent, %d dropped", stream, stats.read,
                     stats.sent, stats.dropped)
            last_report = now
        pacer.wait(stop)
    if not source.live and not pusher.send_blocking(encode_eos(stream, stats.read),
                                                           timeout_s=5.0):
        log.warning("%s: end-of-stream marker not delivered (no detector)", stream)
    return stats
