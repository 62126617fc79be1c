"""Receive and admit: the detector's first stage, from the frame socket into the rings."""

from __future__ import annotations

import logging
import math
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict

import zmq

from stream.detector.admission import Admission
from stream.detector.events import EventConfig, EventTracker
from stream.detector.runtime import ModelRuntime
from stream.detector.settings import StreamSettings
from stream.detector.stages import InferenceError, Stage
from stream.detector.state import StreamState
from stream.wire.protocol import EndOfStream, Frame, ProtocolError, decode_message

log = logging.getLogger(__name__)


class Receiver(Stage):
    """Takes frames off the socket, admits their streams, and puts them in the rings.

    Bad messages are dropped and counted per reason in ``rejected``; a stream's end, or
    a cut within it (another clip, a restarted capture), is handed to ``finish``.

    Args:
        socket: The bound PULL socket.
        admission: Who gets in.
        streams: The tracked streams, by id (shared with the loop).
        model_for: The model a new stream is scored with, by its id.
        events: Event hysteresis of new streams' trackers.
        finish: ``finish(state, eos)``: score what is left of a stream and end it.
        max_batch: Windows that make a batch (draining stops there).
        settings_for: A stream's live settings, by its id (None: defaults for all).
    """

    def __init__(self, socket: zmq.Socket, admission: Admission,
                 streams: dict[str, StreamState], model_for: Callable[[str], ModelRuntime],
                 events: EventConfig, finish: Callable[[StreamState, bool], None],
                 max_batch: int,
                 settings_for: Callable[[str], StreamSettings] | None = None) -> None:
        self.socket = socket
        self.admission = admission
        self.streams = streams
        self.model_for = model_for
        self.events = events
        self.finish = finish
        self.max_batch = max_batch
        self.settings_for = settings_for or (lambda stream: StreamSettings())
        self.rejected = Counter()
        self.gone: dict[str, float] = {}   # streams ended for idleness -> last frame time

    def reject(self, reason: str, detail: str) -> None:
        self.rejected[reason] += 1
        n = self.rejected[reason]
        if n <= 3 or n % 1000 == 0:   # log the first few of each kind, then every 1000th
            log.warning("dropped a message (%s, %d so far): %s", reason, n, detail)

    def ready_windows(self) -> int:
        return sum(s.ready for s in self.streams.values())

    def held(self) -> bool:
        """Whether :meth:`drain` would take nothing in (a batch is ready or a ring full)."""
        return (self.ready_windows() >= self.max_batch
                or any(s.full for s in self.streams.values()))

    def drain(self) -> None:
        """Take in queued frames until a full batch of windows is ready or a stream's ring
        is full of unscheduled frames; what is left waits in the socket queue (and the
        capture drops once that is full), so a flooded detector never overwrites frames."""
        while not self.held():
            try:
                parts = self.socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                msg = decode_message(parts)
                self.admission.check_sender(msg.stream, _user_id(parts))
                self.accept(msg)
            except ProtocolError as err:
                self.reject(err.reason, str(err))
                continue
            except (sqlite3.Error, InferenceError):
                raise  # an alert could not be stored, or the network failed: stop (a
                # restart recovers open events)
            except Exception as err:  # noqa: BLE001 - one message must never stop the detector
                log.debug("message failed", exc_info=True)
                self.reject("error", f"{type(err).__name__}: {err}")
                continue

    def accept(self, msg: Frame | EndOfStream) -> StreamState | None:
        state = self.streams.get(msg.stream)
        if isinstance(msg, EndOfStream):
            if state is not None:
                if msg.frames is not None and msg.frames > state.last_seq + 1:
                    state.counts["dropped"] += msg.frames - state.last_seq - 1
                self.finish(state, True)
            return None
        if state is None:
            state = self.admit(msg)
        elif msg.image.shape != state.shape:
            raise ProtocolError("shape_changed", f"stream {msg.stream!r} frame shape "
                                f"{msg.image.shape} differs from {state.shape}")
        if msg.clip != state.clip or msg.seq <= state.last_seq:
            # A cut: another clip, or a restarted capture counting from 0 again.
            if state.ring.count:
                self.finish(state, False)
            state.clip = msg.clip
            state.last_seq = -1
        if msg.seq > state.last_seq + 1 and state.last_seq >= 0:
            state.counts["dropped"] += msg.seq - state.last_seq - 1
        if msg.reconnects is not None:
            # A restarted capture counts from 0 again: then all it reports is new.
            last = state.capture_reconnects if msg.reconnects >= state.capture_reconnects else 0
            state.counts["reconnects"] += msg.reconnects - last
            state.capture_reconnects = msg.reconnects
        state.last_seq = msg.seq
        state.last_seen = time.monotonic()
        state.counts["received"] += 1
        if not state.settings.detect:   # switched off: seen (online), never scored
            state.counts["paused"] += 1
            return state
        ring = state.ring
        if state.full:
            # The next window's first frame would be overwritten: skip the oldest frames.
            start = ring.count - ring.capacity + 1
            state.counts["overrun"] += max(0, start - state.scored)
            state.scored = max(state.scored, start)
            state.next_start = start
        slot = ring.push()
        state.runtime.contract.preprocess(msg.image, out=ring.fields["x"][slot])
        ring.fields["src"][slot] = msg.image
        ring.fields["seq"][slot] = msg.seq
        ring.fields["ts"][slot] = msg.ts
        ring.fields["frame"][slot] = -1 if msg.frame is None else msg.frame
        return state

    def admit(self, msg: Frame) -> StreamState:
        runtime = self.model_for(msg.stream)
        need = runtime.capacity * (msg.image.nbytes + 4 * math.prod(runtime.contract.shape)
                                   + 24) + runtime.store_bytes
        victim = self.admission.admit(msg.stream, need, self.streams)
        if victim is not None:
            log.info("stream %s evicted after probation (%d frame(s), quiet): %s takes its "
                     "place", victim, self.streams[victim].received, msg.stream)
            self.rejected["evicted"] += 1
            del self.streams[victim]
        settings = self.settings_for(msg.stream)
        threshold = (runtime.scorer.threshold if settings.threshold is None
                     else settings.threshold)
        state = StreamState(msg.stream, msg.image.shape, runtime,
                            EventTracker(msg.stream, threshold, **asdict(self.events)),
                            settings)
        self.streams[msg.stream] = state
        self.gone.pop(msg.stream, None)
        log.info("new stream %s (%s)", msg.stream, "x".join(map(str, msg.image.shape)))
        return state


def _user_id(parts: list) -> str | None:
    """The CURVE client key ZeroMQ authenticated the message's sender with, if any."""
    try:
        return parts[0].get("User-Id")
    except (AttributeError, zmq.ZMQError):
        return None
