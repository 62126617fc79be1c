"""The detector: PULL frames, buffer them per stream, score windows in batches, publish."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import Counter
from dataclasses import asdict

import numpy as np
import zmq

from models.scoring import LOOKBACK, ScorerConfig
from stream.detector.annotate import Annotator, find_boxes
from stream.detector.config import DetectorConfig
from stream.detector.engine import Engine
from stream.detector.events import EventConfig, EventTracker, FrameVerdict
from stream.detector.histogram import Histogram
from stream.detector.ring import RingBuffer
from stream.detector.snapshots import PeakFrame
from stream.store import EventStore, recovered_end
from stream.wire.endpoints import is_loopback
from stream.wire.protocol import EndOfStream, Frame, ProtocolError, decode_message
from stream.wire.publisher import Publisher
from stream.wire.security import CurveServer

log = logging.getLogger(__name__)


#: Per-stream counters, as the ``eos`` message reports them.
COUNTS = ("received", "scored", "dropped", "overrun", "unscored")


class StreamState:
    """Everything the detector keeps for one stream."""

    def __init__(self, stream: str, shape: tuple[int, ...], size: int, capacity: int,
                 tracker: EventTracker) -> None:
        self.stream = stream
        self.shape = shape
        self.ring = RingBuffer(capacity, {"x": ((size, size), np.float32),
                                          "src": (shape, np.uint8), "seq": ((), np.int64),
                                          "ts": ((), np.float64), "frame": ((), np.int64)})
        self.tracker = tracker
        self.peak = PeakFrame()
        self.capture_reconnects = 0   # the count the capture reported last
        self.clip: str | None = None
        self.next_start = 0     # absolute index of the next window's first frame
        self.scored = 0         # frames before this absolute index are scored
        self.last_seq = -1
        self.counts = Counter()
        self.last_seen = time.monotonic()
        self.rate_mark = (self.last_seen, 0)  # (time, frames received) at the last status
        self.online = True

    def reset(self) -> None:
        self.ring.clear()
        self.peak.reset()
        self.next_start = self.scored = 0


class Detector:
    """The live detector. ``run()`` loops until ``stop`` is set, then closes open events.

    Args:
        config: Sockets, model, batching.
        scorer: Scoring rule.
        events: Event hysteresis.
        annotator: Overlay drawing.
        context: ZeroMQ context.
    """

    def __init__(self, config: DetectorConfig, scorer: ScorerConfig | None = None,
                 events: EventConfig | None = None, annotator: Annotator | None = None,
                 context: zmq.Context | None = None) -> None:
        self.config = config
        self.engine = Engine(config.model, config.device, config.precision, config.max_batch,
                             config.int8_calibration,
                             decode_last=config.stride + LOOKBACK)
        self.window = self.engine.window
        if self.window < 2:
            raise ValueError(f"{config.model} has a window of {self.window} frame: scoring "
                             "needs at least 2 (the error's change between frames); retrain "
                             "it with a longer window")
        if config.stride > self.window:
            raise ValueError(f"detector stride must be 1..{self.window} (the window of "
                             f"{config.model}), got {config.stride}")
        self.contract = self.engine.contract
        self.scorer = (scorer or ScorerConfig()).build(
            self.engine.meta.calibration, self.contract.pixel_scale,
            self.engine.calibration_arrays.get("baseline"))
        self.events = events or EventConfig()
        self.annotator = annotator or Annotator()
        self.capacity = self.window + 2 * config.stride
        self.streams: dict[str, StreamState] = {}
        self.gone: dict[str, float] = {}   # streams ended for idleness -> last frame time
        self.rejected = Counter()
        self.inference = Histogram()   # seconds per forward pass
        ctx = context or zmq.Context.instance()
        curve = (CurveServer(config.curve_secret_key, config.curve_allowed)
                 if config.curve_secret_key else None)
        self._auth = curve.start(ctx) if curve is not None else None
        self._pull = ctx.socket(zmq.PULL)
        if curve is not None:
            curve.apply(self._pull)
        self._pull.setsockopt(zmq.RCVHWM, config.receive_hwm)
        # A peer sending anything larger is disconnected by ZeroMQ before it is buffered.
        self._pull.setsockopt(zmq.MAXMSGSIZE, config.max_message_mb * 2**20)
        self._pull.setsockopt(zmq.LINGER, 0)
        self._pull.bind(config.bind)
        self.publisher = Publisher(config.publish, hwm=config.publish_hwm, context=ctx,
                                   curve=curve)
        # What was bound (a ``:*`` port resolved): ``vadstream detect --ready-file`` reports it.
        self.endpoints = {"bind": self._pull.getsockopt_string(zmq.LAST_ENDPOINT),
                          "publish": self.publisher.socket.getsockopt_string(zmq.LAST_ENDPOINT)}
        self.store = EventStore(config.events_db, exclusive=True) if config.events_db else None
        self.started = time.time()
        self._last_status = 0.0
        self._recover()
        for endpoint in (config.bind, config.publish):
            if not is_loopback(endpoint) and curve is None:
                log.warning("%s is reachable beyond this machine and unauthenticated: anyone "
                            "who can reach it can push frames or read alerts", endpoint)
        log.info("detector: frames on %s, topics on %s, rule %s (threshold %.1f), window %d, "
                 "stride %d, precision %s", config.bind, config.publish, self.scorer.rule,
                 self.scorer.threshold, self.window, config.stride, self.engine.precision)

    # -- receiving -------------------------------------------------------------------------
    def _reject(self, reason: str, detail: str) -> None:
        self.rejected[reason] += 1
        n = self.rejected[reason]
        if n <= 3 or n % 1000 == 0:   # log the first few of each kind, then every 1000th
            log.warning("dropped a message (%s, %d so far): %s", reason, n, detail)

    def _ready_windows(self) -> int:
        return sum((s.ring.count - s.next_start - self.window) // self.config.stride + 1
                   for s in self.streams.values() if s.ring.count >= s.next_start + self.window)

    def _drain(self) -> None:
        """Take in queued frames until a full batch of windows is ready or a stream's ring
        is full of unscored frames; what is left waits in the socket queue (and the
        capture drops once that is full), so a flooded detector never overwrites frames."""
        while self._ready_windows() < self.config.max_batch:
            try:
                parts = self._pull.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                state = self._accept(decode_message(parts))
            except ProtocolError as err:
                self._reject(err.reason, str(err))
                continue
            except sqlite3.Error:
                raise  # an alert could not be stored: stop, and recover it at restart
            except Exception as err:  # noqa: BLE001 - one message must never stop the detector
                log.debug("message failed", exc_info=True)
                self._reject("error", f"{type(err).__name__}: {err}")
                continue
            if state is not None and state.ring.count - state.next_start >= self.capacity:
                return

    def _accept(self, msg: Frame | EndOfStream) -> StreamState | None:
        state = self.streams.get(msg.stream)
        if isinstance(msg, EndOfStream):
            if state is not None:
                if msg.frames is not None and msg.frames > state.last_seq + 1:
                    state.counts["dropped"] += msg.frames - state.last_seq - 1
                self._finish(state, eos=True)
            return None
        if state is None:
            if len(self.streams) >= self.config.max_streams:
                raise ProtocolError("too_many_streams", f"stream {msg.stream!r} refused: "
                                    f"{self.config.max_streams} streams already tracked")
            need = self.capacity * (msg.image.nbytes + 4 * self.contract.size ** 2 + 24)
            used = sum(s.ring.nbytes for s in self.streams.values())
            if used + need > self.config.max_buffer_mb * 2**20:
                raise ProtocolError("buffer_budget", f"stream {msg.stream!r} refused: its "
                                    f"buffers would pass max_buffer_mb "
                                    f"({self.config.max_buffer_mb})")
            state = StreamState(msg.stream, msg.image.shape, self.contract.size, self.capacity,
                                EventTracker(msg.stream, self.scorer.threshold,
                                             **asdict(self.events)))
            self.streams[msg.stream] = state
            self.gone.pop(msg.stream, None)
            log.info("new stream %s (%s)", msg.stream, "x".join(map(str, msg.image.shape)))
        elif msg.image.shape != state.shape:
            raise ProtocolError("shape_changed", f"stream {msg.stream!r} frame shape "
                                f"{msg.image.shape} differs from {state.shape}")
        if msg.clip != state.clip or msg.seq <= state.last_seq:
            # A cut: another clip, or a restarted capture counting from 0 again.
            if state.ring.count:
                self._finish(state, eos=False)
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
        ring = state.ring
        if ring.count - state.next_start >= ring.capacity:
            # The next window's first frame would be overwritten: skip the oldest frames.
            start = ring.count - ring.capacity + 1
            state.counts["overrun"] += max(0, start - state.scored)
            state.scored = max(state.scored, start)
            state.next_start = start
        slot = ring.push()
        self.contract.preprocess(msg.image, out=ring.fields["x"][slot])
        ring.fields["src"][slot] = msg.image
        ring.fields["seq"][slot] = msg.seq
        ring.fields["ts"][slot] = msg.ts
        ring.fields["frame"][slot] = -1 if msg.frame is None else msg.frame
        return state

    # -- scoring ---------------------------------------------------------------------------
    def _take_windows(self, states=None) -> list[tuple[StreamState, int]]:
        """Up to ``max_batch`` ready windows, of ``states`` (default: every stream)."""
        taken = []
        if states is None:  # the longest backlog first, so no stream starves
            states = sorted(self.streams.values(), key=lambda s: s.next_start - s.ring.count)
        for state in states:
            while (len(taken) < self.config.max_batch
                   and state.ring.count >= state.next_start + self.window):
                taken.append((state, state.next_start))
                state.next_start += self.config.stride
        return taken

    def _score(self, windows: list[tuple[StreamState, int]]) -> None:
        # Each window scores the frames after those already scored: a stream's first
        # window (and a clip's last) all T, the others their newest `stride`, reading
        # the frame before them too (the error's change), which the engine's tail network
        # decodes alone. Windows that need all T decoded run by themselves at batch 1 (so
        # the full network keeps one small memory plan), the others together; in order,
        # so each stream's frames are emitted in order.
        firsts, scored = [], {}
        for state, start in windows:
            firsts.append(max(scored.get(state.stream, state.scored), start) - start)
            scored[state.stream] = start + self.window
        skip = self.window - self.engine.decode_last
        i = 0
        while i < len(windows):
            j = i + 1
            tail = firsts[i] - LOOKBACK >= skip
            if tail:
                while j < len(windows) and firsts[j] - LOOKBACK >= skip:
                    j += 1
            self._score_group(windows[i:j], firsts[i:j], tail)
            i = j

    def _score_group(self, windows: list[tuple[StreamState, int]], firsts: list[int],
                     tail: bool) -> None:
        batch = self.engine.batch   # the engine reads its input from here, no copy
        for i, (state, start) in enumerate(windows):
            state.ring.read("x", start, self.window, out=batch[i])
        started = time.perf_counter()
        recon = self.engine.run(len(windows), tail=tail)
        self.inference.observe(time.perf_counter() - started)
        offset = self.window - recon.shape[1]   # frame t of a window is recon[:, t - offset]
        for i, ((state, start), lo) in enumerate(zip(windows, firsts, strict=True)):
            scores = self.scorer.score(recon[i], batch[i, offset:], lo - offset)
            for j in range(self.window - lo):
                self._emit(state, start + lo + j, scores, j)
            state.scored = start + self.window

    def _emit(self, state: StreamState, index: int, scores, j: int) -> None:
        ring, stream = state.ring, state.stream
        slot = ring.slot(index)
        seq, ts = int(ring.fields["seq"][slot]), float(ring.fields["ts"][slot])
        frame = int(ring.fields["frame"][slot])
        frame = None if frame < 0 else frame
        anomalous = bool(scores.anomalous[j])
        score = float(scores.score[j])
        mask = scores.mask[j]
        boxes = find_boxes(mask, state.shape) if anomalous else []
        state.counts["scored"] += 1
        topic = f"overlay.{stream}"
        wanted = self.publisher.wants(topic)
        # The overlay is drawn for subscribers, and for the events store when this frame
        # becomes its event's peak (the snapshot a dashboard shows, even one started later).
        peak = self.store is not None and state.peak.wants(
            anomalous, score, state.tracker.open_event is not None)
        jpeg = None
        if wanted or peak:
            label = f"{self.scorer.rule} {score:.1f} / {self.scorer.threshold:.1f}"
            image = self.annotator.draw(ring.fields["src"][slot], mask if anomalous else None,
                                        boxes, label, anomalous)
            jpeg = self.annotator.encode(image)
        if peak:
            state.peak.keep(score, seq, jpeg)
        for alert in state.tracker.update(FrameVerdict(seq, ts, anomalous, score, boxes,
                                                       state.clip, frame)):
            self._alert(alert, state)
        now = time.time()
        self.publisher.publish_json(f"score.{stream}", {
            "stream": stream, "seq": seq, "ts": ts, "clip": state.clip, "frame": frame,
            "scores": {"error": float(scores.error[j]), "area": int(scores.area[j]),
                       "peak": float(scores.peak[j]), "motion": float(scores.motion[j]),
                       "score": score},
            "threshold": self.scorer.threshold, "rule": self.scorer.rule,
            "anomalous": anomalous, "latency_ms": round((now - ts) * 1000, 2)})
        if wanted:
            self.publisher.publish_overlay(topic, {
                "stream": stream, "seq": seq, "ts": ts, "clip": state.clip, "frame": frame,
                "anomalous": anomalous, "score": score, "boxes": boxes}, jpeg)

    def _alert(self, alert: dict, state: StreamState | None = None) -> None:
        """Store (with the event's snapshot when its peak changed), then publish: an alert
        that was published is always in the store, and so is its peak's snapshot."""
        log.info("alert %s %s on %s (score %.1f)", alert["type"], alert["id"][:8],
                 alert["stream"], alert["score"])
        if self.store is not None:
            jpeg = state.peak.for_alert(alert) if state is not None else None
            if jpeg is not None:
                self.store.put_snapshot(alert["id"], alert["stream"], alert["peak_seq"], jpeg)
            self.store.append(alert)
        if state is not None:
            if alert["type"] == "start":
                state.counts["events"] += 1
            elif alert["type"] == "end":
                state.peak.reset()
        self.publisher.publish_json(f"alert.{alert['stream']}", alert)

    def _recover(self) -> None:
        """End the events a previous detector left open (it was killed mid-event)."""
        if self.store is None:
            return
        for last in self.store.open_events():
            log.warning("event %s on %s was left open by a previous run: ending it",
                        last["id"][:8], last["stream"])
            self._alert(recovered_end(last))

    def _finish(self, state: StreamState, eos: bool) -> None:
        """Score what is left of a stream (or clip), close its event, and reset or forget it."""
        ring = state.ring
        while windows := self._take_windows([state]):
            self._score(windows)
        if ring.count > state.scored:
            if ring.count >= self.window:
                self._score([(state, ring.count - self.window)])
            else:
                state.counts["unscored"] += ring.count - state.scored
        end = state.tracker.close()
        if end is not None:
            self._alert(end, state)
        state.reset()
        if eos:
            self.publisher.publish_json(f"eos.{state.stream}", {
                "stream": state.stream, **{k: state.counts[k] for k in COUNTS}})
            del self.streams[state.stream]
            log.info("stream %s ended: %s", state.stream, dict(state.counts))

    # -- status and loop -------------------------------------------------------------------
    def status(self) -> dict:
        """The ``status`` message: per-stream counters and queue depth, rejections, the
        model's precision, the time it has spent reconstructing (and on how many frames)
        and the cumulative histogram of forward-pass times."""
        now = time.monotonic()
        streams = {}
        for s in self.streams.values():
            mark_t, mark_n = s.rate_mark
            online = now - s.last_seen < self.config.offline_after
            if online != s.online:
                log.warning("stream %s is %s", s.stream, "online" if online else "offline")
                s.online = online
            streams[s.stream] = {
                "received": s.counts["received"], "scored": s.counts["scored"],
                "dropped": s.counts["dropped"], "overrun": s.counts["overrun"],
                "fps": round((s.counts["received"] - mark_n) / max(1e-3, now - mark_t), 2),
                "queue": s.ring.count - s.scored, "event_open": s.tracker.open_event is not None,
                "events": s.counts["events"], "reconnects": s.counts["reconnects"],
                "online": online, "clip": s.clip}
            s.rate_mark = (now, s.counts["received"])
        for stream, last in self.gone.items():   # still reported: a camera that is down
            streams[stream] = {"online": False, "last_seen": last, "idle_ended": True}
        return {"ts": time.time(), "uptime_s": round(time.time() - self.started, 1),
                "streams": streams, "rejected": dict(self.rejected),
                "subscriptions": self.publisher.subscriptions,
                "rule": self.scorer.rule, "threshold": self.scorer.threshold,
                "status_interval": self.config.status_interval,
                "inference_s": self.inference.as_dict(),
                "precision": self.engine.precision,
                "inference": {"seconds": round(self.engine.busy_s, 3),
                              "frames": self.engine.frames_run}}

    def step(self, timeout_ms: int = 50) -> None:
        """One turn of the loop: take in subscriptions and frames, score one batch,
        end idle streams, report status. Under overload every turn still does all of it."""
        events = dict(self._poller.poll(0 if self._ready_windows() else timeout_ms))
        if self.publisher.socket in events:
            self.publisher.read_subscriptions()
        if self._pull in events:
            self._drain()
        windows = self._take_windows()
        if windows:
            self._score(windows)
        now = time.monotonic()
        if now - self._last_status >= self.config.status_interval:
            self._last_status = now
            for state in [s for s in self.streams.values()
                          if now - s.last_seen > self.config.idle_timeout]:
                log.warning("stream %s sent nothing for %.0f s: ending it", state.stream,
                            self.config.idle_timeout)
                self._finish(state, eos=True)
                self.gone[state.stream] = time.time() - (now - state.last_seen)
                while len(self.gone) > self.config.max_streams:   # bounded: oldest out
                    self.gone.pop(next(iter(self.gone)))
            self.publisher.publish_json("status", self.status())

    def run(self, stop: threading.Event) -> None:
        """Serve until ``stop`` is set; then end every open event and close the sockets."""
        self._poller = zmq.Poller()
        self._poller.register(self._pull, zmq.POLLIN)
        self._poller.register(self.publisher.socket, zmq.POLLIN)
        try:
            while not stop.is_set():
                self.step()
        finally:
            for state in list(self.streams.values()):
                end = state.tracker.close()
                if end is not None:
                    self._alert(end, state)
            self.close()

    def close(self) -> None:
        """Close both sockets and the events store."""
        self._pull.close()
        self.publisher.close()
        if self._auth is not None:
            self._auth.stop()
        if self.store is not None:
            self.store.close()
