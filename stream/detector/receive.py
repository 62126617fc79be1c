"""Receive and admit, then ring: the detector's first stages, from the frame socket into
the streams' rings."""

from __future__ import annotations

import logging
import math
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict

import zmq

from stream.detector.events import EventConfig, EventTracker
from stream.detector.inference import InferenceError
from stream.detector.items import Cut, Received
from stream.detector.stages import Stage
from stream.detector.state import StreamState
from stream.detector.streams import StreamRegistry
from stream.wire.protocol import EndOfStream, Frame, ProtocolError, decode_message

log = logging.getLogger(__name__)


class Receiver(Stage):
    """Takes messages off the socket and admits their streams: its items are the frames
    to ring (:class:`Received`) and the cuts their streams' ends and restarts make
    (:class:`Cut`), in the order they came.

    Bad messages are dropped and counted per reason in ``rejected``.

    Args:
        socket: The bound PULL socket.
        streams: The streams' registry (models, settings, admission, tracked states).
        events: Event hysteresis of new streams' trackers.
        max_batch: Windows that make a batch (taking in stops there).
    """

    def __init__(self, socket: zmq.Socket, streams: StreamRegistry, events: EventConfig,
                 max_batch: int) -> None:
        self.socket = socket
        self.registry = streams
        self.admission = streams.admission
        self.streams = streams.states
        self.events = events
        self.max_batch = max_batch
        self.rejected = Counter()

    def reject(self, reason: str, detail: str) -> None:
        self.rejected[reason] += 1
        n = self.rejected[reason]
        if n <= 3 or n % 1000 == 0:   # log the first few of each kind, then every 1000th
            log.warning("dropped a message (%s, %d so far): %s", reason, n, detail)

    def ready_windows(self) -> int:
        return sum(s.ready for s in self.streams.values())

    def held(self) -> bool:
        """Whether :meth:`process` would take nothing in (a batch is ready or a ring full)."""
        return (self.ready_windows() >= self.max_batch
                or any(s.full for s in self.streams.values()))

    def process(self) -> Iterator[Received | Cut]:
        """The items of the queued messages, one message at a time, until a full batch of
        windows is ready or a stream's ring is full of unscheduled frames (checked before
        each message, once the caller has put the items before it through the stages);
        what is left waits in the socket queue (and the capture drops once that is full),
        so a flooded detector never overwrites frames."""
        while not self.held():
            try:
                parts = self.socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                msg = decode_message(parts)
                self.admission.check_sender(msg.stream, _user_id(parts))
                yield from self.accept(msg)
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

    def accept(self, msg: Frame | EndOfStream) -> Iterator[Received | Cut]:
        """Admit one message's stream and count it; its items: the frame to ring (none
        for a paused stream's), after the cut that a frame of another segment makes (the
        stream's clip and count change only once the caller has put the cut through)."""
        state = self.streams.get(msg.stream)
        if isinstance(msg, EndOfStream):
            if state is not None:
                if msg.frames is not None and msg.frames > state.last_seq + 1:
                    state.counts["dropped"] += msg.frames - state.last_seq - 1
                yield self._cut(state, eos=True)
            return
        if state is None:
            state = self.admit(msg)
        elif msg.image.shape != state.shape:
            raise ProtocolError("shape_changed", f"stream {msg.stream!r} frame shape "
                                f"{msg.image.shape} differs from {state.shape}")
        if msg.clip != state.clip or msg.seq <= state.last_seq:
            # A cut: another clip, or a restarted capture counting from 0 again.
            if state.ring.count:
                yield self._cut(state, eos=False)
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
            return
        yield Received(state, msg)

    def _cut(self, state: StreamState, eos: bool) -> Cut:
        """The cut of a stream's segment (``eos``: it ends; from now on untracked)."""
        if eos:
            del self.streams[state.stream]
        return Cut(state, eos)

    def admit(self, msg: Frame) -> StreamState:
        runtime = self.registry.model_for(msg.stream)
        need = runtime.capacity * (msg.image.nbytes + 4 * math.prod(runtime.contract.shape)
                                   + 24) + runtime.store_bytes
        victim = self.admission.admit(msg.stream, need, self.streams)
        if victim is not None:
            log.info("stream %s evicted after probation (%d frame(s), quiet): %s takes its "
                     "place", victim, self.streams[victim].received, msg.stream)
            self.rejected["evicted"] += 1
            del self.streams[victim]
        settings = self.registry.settings_of_new(msg.stream)
        threshold = (runtime.scorer.threshold if settings.threshold is None
                     else settings.threshold)
        state = StreamState(msg.stream, msg.image.shape, runtime,
                            EventTracker(msg.stream, threshold, **asdict(self.events)),
                            settings)
        self.streams[msg.stream] = state
        self.registry.gone.pop(msg.stream, None)
        log.info("new stream %s (%s)", msg.stream, "x".join(map(str, msg.image.shape)))
        return state


class Ring(Stage):
    """Preprocesses each received frame with its stream's model's contract into the
    stream's ring. A ring full of unscheduled frames (possible only when windows are
    skipped) drops its oldest, counted as ``overrun``."""

    def process(self, item: Received) -> None:
        state, msg = item.state, item.frame
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


def _user_id(parts: list) -> str | None:
    """The CURVE client key ZeroMQ authenticated the message's sender with, if any."""
    try:
        return parts[0].get("User-Id")
    except (AttributeError, zmq.ZMQError):
        return None
