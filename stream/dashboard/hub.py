"""Between the detector and the pages: one SUB socket in, one WebSocket per page out.

Overlays go to the pages over the same WebSocket as everything else, as binary
messages, rather than as one MJPEG response per stream: a browser opens at most six
HTTP/1.1 connections to one host, so a page of six MJPEG streams would stall, and a
WebSocket lets each page get only the newest frame of each stream when it is slower
than the detector (older ones are skipped, never queued).
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from collections.abc import Callable

from aiohttp import WSCloseCode, web

from stream.dashboard.clips import EventClips
from stream.dashboard.state import LiveState
from stream.wire.security import CurveClient
from stream.wire.subscriber import AsyncSubscriber
from stream.wire.topics import (
    AlertMessage,
    EosMessage,
    OverlayMessage,
    ScoreMessage,
    StatusMessage,
    TopicMessage,
)

log = logging.getLogger(__name__)
TOPICS = ("status", "score.", "overlay.", "alert.", "eos.")
#: Where the login middleware leaves a request's "still allowed?" check (see login.ALLOWED).
ALLOWED: web.RequestKey[Callable[[], bool]] = web.RequestKey("allowed", object)
#: Who sent a request, as the login middleware saw it: a user, ``token:NAME``, or ``local``
#: (a dashboard without a login, answering this machine only).
WHO: web.RequestKey[str] = web.RequestKey("who", str)
#: Seconds between the batches of scores, and between status messages, sent to pages.
SCORES_EVERY = 0.25
STATUS_EVERY = 1.0


def pack_overlay(overlay: OverlayMessage) -> bytes:
    """A binary WebSocket message: 4-byte big-endian header length, JSON header (the
    overlay's as published), JPEG."""
    head = overlay.to_json().encode()
    return struct.pack(">I", len(head)) + head + overlay.jpeg


class Page:
    """One connected page: its pending JSON messages and the newest overlay per stream.

    Args:
        ws: The page's WebSocket.
        max_queued: JSON messages queued before the oldest are dropped (a stuck page).
        allowed: Whether what let the page in (its login) still would; it is closed when
            not.
    """

    def __init__(self, ws: web.WebSocketResponse, max_queued: int = 5000,
                 allowed: Callable[[], bool] = lambda: True) -> None:
        self.ws = ws
        self.allowed = allowed
        self._json: list[str] = []
        self._max = max_queued
        self._overlays: dict[str, bytes] = {}
        self._wake = asyncio.Event()

    def send_json(self, message: dict) -> None:
        self._json.append(json.dumps(message))
        if len(self._json) > self._max:
            del self._json[: len(self._json) - self._max]
        self._wake.set()

    def send_overlay(self, stream: str, packed: bytes) -> None:
        self._overlays[stream] = packed     # the newest frame replaces one not sent yet
        self._wake.set()

    async def pump(self) -> None:
        """Send what is pending until the page goes; each send waits for the socket to
        drain, which is what makes a slow page skip overlays."""
        try:
            while not self.ws.closed:
                await self._wake.wait()
                self._wake.clear()
                messages, self._json = self._json, []
                for text in messages:
                    await self.ws.send_str(text)
                while self._overlays:
                    stream = next(iter(self._overlays))
                    await self.ws.send_bytes(self._overlays.pop(stream))
        except ConnectionResetError:
            return   # the page went away mid-send


class Hub:
    """Reads the detector's topics into the state and the event clips, and fans out.

    Args:
        connect: The detector's topic endpoint.
        state: What the dashboard knows.
        clips: Frames around events.
        curve: CURVE keys, when the detector requires them.
    """

    def __init__(self, connect: str, state: LiveState, clips: EventClips,
                 curve: CurveClient | None = None) -> None:
        self.connect = connect
        self.state = state
        self.clips = clips
        self.curve = curve
        self.pages: set[Page] = set()

    # -- from the detector ---------------------------------------------------------------
    async def read_topics(self) -> None:
        """Subscribe and take in messages until cancelled. ZeroMQ connects (and
        reconnects) by itself, so the detector may start before or after this."""
        with AsyncSubscriber(self.connect, list(TOPICS), hwm=2000, curve=self.curve) as sub:
            log.info("dashboard: reading the detector's topics on %s", self.connect)
            while True:
                msg = await sub.recv()
                if msg is None:
                    continue      # refused by the decoder (and logged there)
                try:
                    self.handle(msg)
                except Exception:  # noqa: BLE001 - one bad message must not stop the page
                    log.warning("skipped a message on %s", msg.topic, exc_info=True)

    def handle(self, msg: TopicMessage) -> None:
        """Take one published message."""
        if isinstance(msg, StatusMessage):
            self.state.on_status(msg)
        elif isinstance(msg, ScoreMessage):
            self.state.on_score(msg)
        elif isinstance(msg, OverlayMessage):
            self.state.on_overlay(msg)
            self.clips.on_overlay(msg)
            if self.pages:
                packed = pack_overlay(msg)
                for page in self.pages:
                    page.send_overlay(msg.stream, packed)
        elif isinstance(msg, AlertMessage):
            event = self.state.on_alert(msg)
            self.clips.on_alert(msg)
            self.broadcast({"type": "event", "event": event})
        elif isinstance(msg, EosMessage):
            self.state.on_eos(msg)
            self.clips.on_eos(msg.stream)
            self.broadcast({"type": "eos", "stream": msg.stream})

    # -- to the pages --------------------------------------------------------------------
    def broadcast(self, message: dict) -> None:
        for page in self.pages:
            page.send_json(message)

    def status_message(self) -> dict:
        return {"type": "status", "detector": {**self.state.detector(), "endpoint": self.connect},
                "streams": [v.summary() for v in self.state.streams.values()]}

    async def close_revoked(self) -> None:
        """Close every page whose login has ended (a logout, its user removed or given a
        new password, its token removed)."""
        revoked = [page for page in self.pages if not page.allowed()]
        for page in revoked:
            self.pages.discard(page)
        for page in revoked:
            log.info("closing a page whose login ended")
            await page.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"login ended")

    async def tick(self) -> None:
        """Send batched scores four times a second and the status every second; close
        the pages whose login ended, every second."""
        turns = 0
        while True:
            await asyncio.sleep(SCORES_EVERY)
            turns += 1
            for view in self.state.streams.values():
                points = view.take_pending()
                if points and self.pages:
                    self.broadcast({"type": "scores", "stream": view.id, "points": points})
            if turns * SCORES_EVERY >= STATUS_EVERY:
                turns = 0
                await self.close_revoked()
                if self.pages:
                    self.broadcast(self.status_message())

    async def serve_page(self, request: web.Request) -> web.WebSocketResponse:
        """``/ws``: a hello with every stream's recent scores, then live updates."""
        ws = web.WebSocketResponse(heartbeat=20)
        await ws.prepare(request)
        page = Page(ws, allowed=request.get(ALLOWED) or (lambda: True))
        hello = self.status_message()
        # The pending points reach this page with the next tick: not in the hello too.
        hello.update(type="hello", history_s=self.state.history_s,
                     scores={v.id: list(v.scores)[:max(0, len(v.scores) - len(v.pending))]
                             for v in self.state.streams.values()})
        page.send_json(hello)
        for view in self.state.streams.values():
            if view.latest is not None:
                page.send_overlay(view.id, pack_overlay(view.latest))
        self.pages.add(page)
        pump = asyncio.create_task(page.pump())
        try:
            async for _ in ws:     # the page sends nothing; this waits for it to close
                pass
        finally:
            self.pages.discard(page)
            pump.cancel()
        return ws
