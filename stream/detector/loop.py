"""The detector: a pipeline of stages, read top to bottom.

receive and admit (:class:`Receiver`) -> ring (:class:`Ring`) -> schedule windows
(:class:`Scheduler`) -> infer, batched, on a worker thread (:class:`Inference`) -> score
(:class:`Scoring`) -> events, store, snapshots, clips (:class:`Events`) -> annotate
(:class:`Annotating`) -> publish (:class:`Publishing`, the only stage that sends).

Frames, cuts and stream ends travel as items (:mod:`stream.detector.items`) through one
queue; the controls change the streams' registry (:class:`StreamRegistry`) and queue the
cuts they make there. While the network runs batch *k*, the loop scores, annotates and
publishes batch *k - 1* and takes in the frames of batch *k + 1*.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path

import zmq

from models.scoring import ScorerConfig
from stream.detector.alerts import Events
from stream.detector.annotate import Annotator
from stream.detector.annotating import Annotating
from stream.detector.clips import ClipConfig, ClipRecorder
from stream.detector.config import DetectorConfig
from stream.detector.control import Controls
from stream.detector.events import EventConfig
from stream.detector.histogram import Histogram
from stream.detector.inference import Inference
from stream.detector.items import Batch, Cut, Received, StreamEnd, Tick
from stream.detector.publish import Publishing
from stream.detector.receive import Receiver, Ring
from stream.detector.retention import Retention, RetentionConfig
from stream.detector.runtime import ModelRuntime
from stream.detector.settings import StreamSettings
from stream.detector.stages import Scheduler, Scoring
from stream.detector.streams import StreamEntry, StreamRegistry
from stream.store import EventStore
from stream.wire.control import ControlServer
from stream.wire.endpoints import is_loopback
from stream.wire.protocol import EndOfStream, Frame
from stream.wire.publisher import Publisher
from stream.wire.security import CurveServer
from stream.wire.topics import StatusMessage

log = logging.getLogger(__name__)

__all__ = ["Detector", "DetectorConfig", "StreamEntry", "is_loopback"]


def load_plugins(modules: Sequence[str]) -> None:
    """Import the modules that register plug-in model families.

    Raises:
        ValueError: If one cannot be imported (naming it and what to do).
    """
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as err:  # noqa: BLE001 - any failure of a plug-in, named
            raise ValueError(f"detector.plugins: cannot import {name!r} ({err}); give a module "
                             "importable from where vadstream runs (PYTHONPATH)") from err


class Detector:
    """The live detector. ``run()`` loops until ``stop`` is set, then closes open events.

    Each configured stream may name its own weights (an anomaly model learns one scene's
    normal); every weights file is loaded once and its windows are batched together.

    Args:
        config: Sockets, model, batching, admission.
        scorer: Scoring rule (for every model; ``auto``/null take each model's own).
        events: Event hysteresis.
        annotator: Overlay drawing.
        context: ZeroMQ context.
        streams: Configured streams: always admitted, each on its ``model`` ("" : the
            detector's), with its ``threshold``, ``detect`` and ``mask``.
        clips: Each event's MP4 clip (default: on, beside the events store; none
            without a store).
        retention: The events store's budget and age (default: none).
    """

    def __init__(self, config: DetectorConfig, scorer: ScorerConfig | None = None,
                 events: EventConfig | None = None, annotator: Annotator | None = None,
                 context: zmq.Context | None = None,
                 streams: Sequence[StreamEntry] = (), clips: ClipConfig | None = None,
                 retention: RetentionConfig | None = None) -> None:
        self.config = config
        load_plugins(config.plugins)
        ctx = context or zmq.Context.instance()
        curve = (CurveServer(config.curve_secret_key, config.curve_allowed)
                 if config.curve_secret_key else None)
        key_streams = curve.bound_streams(config.curve_streams) if curve else None
        #: The pipeline's queue: frames, cuts and stream ends, in the order they came.
        self.queue: deque[Received | Cut] = deque()
        self.registry = StreamRegistry(config, scorer or ScorerConfig(), streams, self.queue,
                                       key_streams)
        registry = self.registry
        # What the status, the tests and the commands read of the registry.
        self.runtimes = registry.runtimes
        self.default = registry.default
        self.scorer = self.default.scorer
        self.stream_models = registry.models
        self.settings = registry.settings
        self.streams = registry.states
        self.admission = registry.admission
        self.gone = registry.gone
        self.inference = Histogram()   # seconds per forward pass
        annotator = annotator or Annotator()
        # What is opened is closed again if a later step fails (a port in use, a locked
        # store), so a retry in the same process starts clean.
        with contextlib.ExitStack() as undo:
            self._auth = curve.start(ctx) if curve is not None else None
            if self._auth is not None:
                undo.callback(self._auth.stop)
            self._pull = ctx.socket(zmq.PULL)
            undo.callback(self._pull.close, 0)
            if curve is not None:
                curve.apply(self._pull)
            self._pull.setsockopt(zmq.RCVHWM, config.receive_hwm)
            # A peer sending anything larger is disconnected by ZeroMQ before it is buffered.
            self._pull.setsockopt(zmq.MAXMSGSIZE, config.max_message_mb * 2**20)
            self._pull.setsockopt(zmq.LINGER, 0)
            self._pull.bind(config.bind)
            self.publisher = Publisher(config.publish, hwm=config.publish_hwm, context=ctx,
                                       curve=curve)
            undo.callback(self.publisher.close)
            self.endpoints = {"bind": self._pull.getsockopt_string(zmq.LAST_ENDPOINT),
                              "publish": self.publisher.socket.getsockopt_string(zmq.LAST_ENDPOINT)}
            store = EventStore(config.events_db, exclusive=True) if config.events_db else None
            self.store = store
            if store is not None:
                undo.callback(store.close)
            self.controls = Controls(registry, store)
            # cameras' keys send their streams' frames; they change no settings
            self.control = (ControlServer(config.control, self.controls.handlers, ctx, curve,
                                          refused=frozenset(key_streams or ()))
                            if config.control else None)
            if self.control is not None:
                undo.callback(self.control.close)
                self.endpoints["control"] = self.control.endpoint
            # The stages, top to bottom.
            self.receiver = Receiver(self._pull, registry, events or EventConfig(),
                                     config.max_batch)
            self.rejected = self.receiver.rejected
            self.ring = Ring()
            self.scheduler = Scheduler(registry)
            self.infer = Inference(ctx, self.inference)
            self.scoring = Scoring()
            self.tracking = Events(store, annotator,
                                   *self._housekeeping(store, annotator, clips, retention,
                                                       events),
                                   drift=config.drift)
            if self.tracking.clips is not None:
                undo.callback(self.tracking.clips.stop)
            self.annotating = Annotating(self.publisher, annotator)
            self.publishing = Publishing(self.publisher)
            self.stages = (self.receiver, self.ring, self.scheduler, self.infer, self.scoring,
                           self.tracking, self.annotating, self.publishing)
            #: What each scored frame goes through, in order (one frame after another, as
            #: they are scored, so each is published as soon as it is ready).
            self.per_frame = (self.tracking, self.annotating, self.publishing)
            self._queued: Batch | None = None    # assembled, waiting for the network
            self.started = time.time()
            self._last_status = 0.0
            self.infer.on_start()   # the one stage with a thread
            undo.callback(self.infer.on_stop)
            for stage in self.stages:
                if stage is not self.infer:
                    stage.on_start()
            undo.pop_all()   # all opened: close() owns them now
        # The first tick: the end alerts of events a killed detector left open.
        self._tick(Tick())
        for endpoint in (config.bind, config.publish, config.control):
            if endpoint and not is_loopback(endpoint) and curve is None:
                log.warning("%s is reachable beyond this machine and unauthenticated: anyone "
                            "who can reach it can push frames or read alerts", endpoint)
        for runtime in self.runtimes.values():
            log.info("model %s: rule %s (threshold %.1f), window %d, stride %d, precision %s",
                     runtime.weights, runtime.scorer.rule, runtime.scorer.threshold,
                     runtime.window, runtime.stride, runtime.engine.precision)
        log.info("detector: frames on %s, topics on %s, %d configured stream(s)",
                 self.endpoints["bind"], self.endpoints["publish"], len(self.stream_models))

    def _housekeeping(self, store: EventStore | None, annotator: Annotator,
                      clips: ClipConfig | None, retention: RetentionConfig | None,
                      events: EventConfig | None,
                      ) -> tuple[ClipRecorder | None, Retention | None]:
        """The clip recorder and retention of the events store (None without a store)."""
        if store is None:
            return None, None
        clips, retention = clips or ClipConfig(), retention or RetentionConfig()
        root = Path(self.config.events_db).parent
        recorder = (ClipRecorder(clips, clips.folder(self.config.events_db), root, annotator,
                                 lead_frames=(events or EventConfig()).open_frames)
                    if clips.enabled else None)
        return recorder, (Retention(retention, store, root, clips.folder(self.config.events_db))
                          if retention.active else None)

    # -- the registry, for callers that hold the detector ---------------------------------
    def load_runtime(self, weights: str) -> ModelRuntime:
        """The runtime of ``weights``, loaded once (:meth:`StreamRegistry.load_runtime`)."""
        return self.registry.load_runtime(weights)

    def release_unused(self) -> list[str]:
        """Forget the loaded models no stream uses (:meth:`StreamRegistry.release_unused`)."""
        return self.registry.release_unused()

    def model_for(self, stream: str) -> ModelRuntime:
        """The model a stream is (or would be) scored with."""
        return self.registry.model_for(stream)

    def settings_for(self, stream: str) -> StreamSettings:
        """A stream's live settings (:meth:`StreamRegistry.settings_for`)."""
        return self.registry.settings_for(stream)

    # -- the items' way through the stages --------------------------------------------------
    def accept(self, msg: Frame | EndOfStream) -> None:
        """Put one decoded message through receive and ring (and any cut it makes)."""
        for item in self.receiver.accept(msg):
            self._push(item)

    def _push(self, item: Received | Cut) -> None:
        """Queue an item and put the queue through: frames into the rings, cuts through
        scheduling (what a cut stream sent is scheduled before any later frame of it)."""
        self.queue.append(item)
        self._flow()

    def _flow(self) -> None:
        while self.queue:
            item = self.queue.popleft()
            if isinstance(item, Cut):
                self._cut(item)
            else:
                self.ring.process(item)

    def _cut(self, cut: Cut) -> None:
        """A stream (or clip) ended: schedule what is left of it, batched with other
        streams' windows, and end it once those frames are emitted (its
        :class:`StreamEnd` rides on the last batch that holds them). Its ring is free at
        once (a scheduled window carries its frames), so a new clip's frames are taken in
        while the network is still busy with the old."""
        state = cut.state
        while state.ready or self.scheduler.leftover(state):
            if self._queued is not None:
                self._advance()
            self._queued = self.scheduler.process(cut)
        unscored = max(0, state.ring.count - state.scored)
        state.reset()
        end = StreamEnd(state, cut.eos, unscored)
        latest = self._queued or self.infer.pending
        if latest is not None:
            latest.ends.append(end)
        else:
            self._end(end)

    def _end(self, end: StreamEnd) -> None:
        for stage in self.stages:
            stage.on_stream_end(end)

    def _post(self, batch: Batch | None) -> None:
        """Score a batch the network ran, put each of its frames through the stages after
        scoring (events, annotate, publish), then the stream ends that waited on it; give
        back its buffers."""
        if batch is None:
            return
        self.scoring.process(batch)
        for frame in batch.frames:
            for stage in self.per_frame:
                stage.process(frame)
        for end in batch.ends:
            self._end(end)
        batch.runtime.give_back(batch.buffers)

    def _tick(self, tick: Tick) -> None:
        """Put a tick through the stages that take one: events (housekeeping), publish."""
        self.tracking.process(tick)
        self.publishing.process(tick)

    def _pump(self) -> None:
        """Keep the network busy: when it is free, start the next batch (the queued one, or
        the ready windows), then emit the one that just finished while the new one runs."""
        if not self.infer.busy:
            self._advance(take=True)

    def _advance(self, take: bool = False) -> None:
        """Wait for the running batch, start the queued one (topped up with ready windows)
        or, with ``take`` and none queued, the ready windows; emit the finished one."""
        done = self.infer.collect()
        batch, self._queued = self._queued, None
        if batch is not None:
            self.scheduler.process(batch)
        elif take:
            batch = self.scheduler.process()
        if batch is not None:
            self.infer.process(batch)
        self._post(done)

    def flush(self) -> None:
        """Run and emit every batch scheduled or in the network (the ready windows that
        no batch holds wait for the next turn)."""
        self._flow()
        while self.infer.pending is not None or self._queued is not None:
            self._advance()

    # -- status and loop -------------------------------------------------------------------
    def status(self) -> dict:
        """The ``status`` message: per-stream counters and queue depth, rejections, the
        models with their precision, the time spent in the network (and on how many
        frames) and the cumulative histogram of forward-pass times."""
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
                "online": online, "clip": s.clip, "model": s.runtime.weights,
                "threshold": s.threshold, "detect": s.settings.detect,
                "paused": s.counts["paused"], "masked": bool(s.settings.mask),
                "gated": s.counts["gated"]}
            if s.drift is not None:
                streams[s.stream]["drift"] = s.drift.describe()
            s.rate_mark = (now, s.counts["received"])
        for stream, last in self.gone.items():   # still reported: a camera that is down
            streams[stream] = {"online": False, "last_seen": last, "idle_ended": True}
        engines = [r.engine for r in self.runtimes.values()]
        return {"ts": time.time(), "uptime_s": round(time.time() - self.started, 1),
                "streams": streams, "rejected": dict(self.rejected),
                "subscriptions": self.publisher.subscriptions,
                "rule": self.scorer.rule, "threshold": self.scorer.threshold,
                "status_interval": self.config.status_interval,
                "inference_s": self.inference.as_dict(),
                "precision": self.default.engine.precision,
                "models": [r.describe() for r in self.runtimes.values()],
                "inference": {"seconds": round(sum(e.busy_s for e in engines), 3),
                              "frames": sum(e.frames_run for e in engines)}}

    def step(self, timeout_ms: int = 50) -> None:
        """One turn of the loop: take in subscriptions and frames, keep the network busy,
        end idle streams, report status. Under overload every turn still does all of it."""
        busy = self.infer.busy
        if busy and self.receiver.held():
            # The next batch is assembled already: wait for the network, not the socket.
            events = dict(self._waiting.poll(timeout_ms))
        else:
            ready = not busy and self.receiver.ready_windows()
            events = dict(self._poller.poll(0 if ready else timeout_ms))
        if self.publisher.socket in events:
            self.publisher.read_subscriptions()
        if self._pull in events:
            for item in self.receiver.process():
                self._push(item)
        if self.control is not None and self.control.socket in events:
            self.control.serve_pending()
            self._flow()   # the cuts the requests made
        self._pump()
        now = time.monotonic()
        if now - self._last_status >= self.config.status_interval:
            self._last_status = now
            for state in [s for s in self.streams.values()
                          if now - s.last_seen > self.config.idle_timeout]:
                log.warning("stream %s sent nothing for %.0f s: ending it", state.stream,
                            self.config.idle_timeout)
                self.registry.cut(state, eos=True)
                self._flow()
                self.gone[state.stream] = time.time() - (now - state.last_seen)
                while len(self.gone) > self.config.max_streams:   # bounded: oldest out
                    self.gone.pop(next(iter(self.gone)))
            self._tick(Tick([StatusMessage.from_dict(self.status(), topic="status")]))

    def run(self, stop: threading.Event) -> None:
        """Serve until ``stop`` is set; then end every open event and close the sockets."""
        self._poller = zmq.Poller()
        self._poller.register(self._pull, zmq.POLLIN)
        self._poller.register(self.publisher.socket, zmq.POLLIN)
        self._poller.register(self.infer.socket, zmq.POLLIN)
        self._waiting = zmq.Poller()
        self._waiting.register(self.publisher.socket, zmq.POLLIN)
        self._waiting.register(self.infer.socket, zmq.POLLIN)
        if self.control is not None:
            self._poller.register(self.control.socket, zmq.POLLIN)
            self._waiting.register(self.control.socket, zmq.POLLIN)
        try:
            while not stop.is_set():
                self.step()
        finally:
            try:
                self.flush()
                for state in list(self.streams.values()):   # their open events end
                    self._end(StreamEnd(state, eos=False, unscored=0))
            finally:
                self.close()

    def close(self) -> None:
        """Stop the stages and close both sockets and the events store."""
        for stage in reversed(self.stages):
            stage.on_stop()
        self._pull.close()
        self.publisher.close()
        if self.control is not None:
            self.control.close()
        if self._auth is not None:
            self._auth.stop()
