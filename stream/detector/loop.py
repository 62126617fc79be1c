"""The detector: receive and admit frames, ring them per stream, schedule windows, infer,
score, track events, annotate and publish, as a pipeline of stages
(:mod:`stream.detector.stages`)."""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import zmq

from models.scoring import ScorerConfig
from models.weights import weights_paths
from stream.detector.admission import Admission
from stream.detector.allowed import ModelFolders, check_threshold_range
from stream.detector.annotate import Annotator
from stream.detector.clips import ClipConfig, ClipRecorder
from stream.detector.config import DetectorConfig
from stream.detector.control import Controls, takes_masks
from stream.detector.events import EventConfig
from stream.detector.histogram import Histogram
from stream.detector.receive import Receiver
from stream.detector.retention import Retention, RetentionConfig
from stream.detector.runtime import ModelRuntime
from stream.detector.settings import StreamSettings, check_polygons, check_threshold
from stream.detector.stages import (
    Events,
    Inference,
    Job,
    Publishing,
    Scheduler,
    Scoring,
)
from stream.detector.state import COUNTS, StreamState
from stream.store import EventStore
from stream.wire.control import ControlServer
from stream.wire.endpoints import is_loopback
from stream.wire.publisher import Publisher
from stream.wire.security import CurveServer

log = logging.getLogger(__name__)

__all__ = ["Detector", "DetectorConfig", "is_loopback"]


class StreamEntry(Protocol):
    """What the detector reads of a configured stream (``streams:`` in the pipeline; its
    ``threshold``, ``detect`` and ``mask`` are read where present)."""

    id: str
    model: str


def entry_settings(entry: StreamEntry) -> StreamSettings:
    """A configured stream's initial live settings."""
    return StreamSettings(threshold=check_threshold(getattr(entry, "threshold", None)),
                          detect=getattr(entry, "detect", True), model=entry.model,
                          mask=check_polygons(getattr(entry, "mask", ())))


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
        scorer = scorer or ScorerConfig()
        self.runtimes: dict[str, ModelRuntime] = {}
        self.default = self._runtime(config.model, scorer)
        self._scorer_config = scorer
        self.stream_models = {s.id: self._runtime(s.model, scorer) if s.model else self.default
                              for s in streams}
        #: What may be loaded while running: the allowed folders and the configured models.
        self.model_folders = ModelFolders(config.model_dirs,
                                          [config.model, *(s.model for s in streams)])
        #: Live settings by stream id: the configured streams', and any set over control.
        self.settings = {s.id: entry_settings(s) for s in streams}
        self._configured = frozenset(self.settings)
        for stream, settings in self.settings.items():
            if settings.mask and not takes_masks(self.stream_models[stream]):
                raise ValueError(f"stream {stream}: {self.stream_models[stream].weights}'s "
                                 "scorer cannot ignore masked regions; remove its mask")
            try:
                check_threshold_range(settings.threshold,
                                      self.stream_models[stream].scorer.threshold)
            except ValueError as err:
                raise ValueError(f"stream {stream}: {err}") from None
        self.scorer = self.default.scorer
        self.streams: dict[str, StreamState] = {}
        self.inference = Histogram()   # seconds per forward pass
        ctx = context or zmq.Context.instance()
        curve = (CurveServer(config.curve_secret_key, config.curve_allowed)
                 if config.curve_secret_key else None)
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
            self.controls = Controls(self)
            key_streams = curve.bound_streams(config.curve_streams) if curve else None
            # cameras' keys send their streams' frames; they change no settings
            self.control = (ControlServer(config.control, self.controls.handlers, ctx, curve,
                                          refused=frozenset(key_streams or ()))
                            if config.control else None)
            if self.control is not None:
                undo.callback(self.control.close)
                self.endpoints["control"] = self.control.endpoint
            store = EventStore(config.events_db, exclusive=True) if config.events_db else None
            self.store = store
            if store is not None:
                undo.callback(store.close)
            self.receiver = Receiver(
                self._pull, Admission(
                    [*self.stream_models, *config.allow], max_streams=config.max_streams,
                    max_bytes=config.max_buffer_mb * 2**20, probation=config.probation,
                    allow_unknown=config.allow_unknown,
                    key_streams=key_streams,
                    window=self.default.window),
                self.streams, self.model_for, events or EventConfig(), self._finish,
                config.max_batch, self._settings_of_new)
            self.admission = self.receiver.admission
            self.rejected = self.receiver.rejected
            self.gone = self.receiver.gone
            self.scheduler = Scheduler()
            self.infer = Inference(ctx, self.inference)
            self.scoring = Scoring()
            self.publishing = Publishing(self.publisher, annotator or Annotator())
            self.tracking = Events(self.publishing, store,
                                   *self._housekeeping(store, clips, retention, events),
                                   drift=config.drift)
            if self.tracking.clips is not None:
                undo.callback(self.tracking.clips.stop)
            self.stages = (self.receiver, self.scheduler, self.infer, self.scoring, self.tracking,
                           self.publishing)
            self._queued: Job | None = None    # assembled, waiting for the network
            self.started = time.time()
            self._last_status = 0.0
            self.infer.start()   # the one stage with a thread
            undo.callback(self.infer.stop)
            for stage in self.stages:
                if stage is not self.infer:
                    stage.start()
            undo.pop_all()   # all opened: close() owns them now
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

    def _housekeeping(self, store: EventStore | None, clips: ClipConfig | None,
                      retention: RetentionConfig | None, events: EventConfig | None,
                      ) -> tuple[ClipRecorder | None, Retention | None]:
        """The clip recorder and retention of the events store (None without a store)."""
        if store is None:
            return None, None
        clips, retention = clips or ClipConfig(), retention or RetentionConfig()
        root = Path(self.config.events_db).parent
        recorder = (ClipRecorder(clips, clips.folder(self.config.events_db), root,
                                 self.publishing.annotator,
                                 lead_frames=(events or EventConfig()).open_frames)
                    if clips.enabled else None)
        return recorder, (Retention(retention, store, root, clips.folder(self.config.events_db))
                          if retention.active else None)

    def _runtime(self, weights: str, scorer: ScorerConfig) -> ModelRuntime:
        key = str(weights_paths(weights)[0].resolve())   # a stem and its .params: one model
        if key not in self.runtimes:
            self.runtimes[key] = ModelRuntime(weights, self.config, scorer)
        return self.runtimes[key]

    # -- per-stream settings (the control channel's) -----------------------------------------
    def load_runtime(self, weights: str) -> ModelRuntime:
        """The runtime of ``weights``, loaded once (under the detector's scorer config),
        when the configuration allows it (:class:`ModelFolders`).

        Raises:
            ModelRefusedError: The same for a missing file and a forbidden one.
        """
        return self._runtime(self.model_folders.check(weights), self._scorer_config)

    def release_unused(self) -> list[str]:
        """Forget the loaded models no stream uses (neither set to it, nor still being
        scored on it), the default aside; returns their weights."""
        used = {id(self.default), *map(id, self.stream_models.values()),
                *(id(s.runtime) for s in self.streams.values())}
        gone = [key for key, runtime in self.runtimes.items() if id(runtime) not in used]
        for key in gone:
            log.warning("model %s released: no stream uses it", self.runtimes.pop(key).weights)
        return gone

    def model_for(self, stream: str) -> ModelRuntime:
        """The model a stream is (or would be) scored with."""
        return self.stream_models.get(stream, self.default)

    def settings_for(self, stream: str) -> StreamSettings:
        """A stream's live settings, kept from the first time they are asked for (a
        control request): those it is tracked with, or defaults for when it arrives."""
        settings = self.settings.get(stream)
        if settings is None:
            state = self.streams.get(stream)
            settings = state.settings if state is not None else StreamSettings()
            self.settings[stream] = settings
        return settings

    def _settings_of_new(self, stream: str) -> StreamSettings:
        """The settings a newly admitted stream starts with: kept ones, else defaults that
        are not kept (a flood of stream ids leaves no settings behind)."""
        return self.settings.get(stream) or StreamSettings()

    def apply_settings(self, stream: str) -> None:
        """Carry a changed threshold to the stream's event tracker (what alerts report)."""
        state = self.streams.get(stream)
        if state is not None:
            state.tracker.threshold = state.threshold

    def end_segment(self, state: StreamState) -> None:
        """Score what a stream sent so far and end its open event; it stays tracked."""
        self._finish(state, eos=False)

    def end_stream(self, state: StreamState) -> None:
        """Score what a stream sent, end its event, report its end and forget its frames;
        its next frame starts it afresh (on its current model)."""
        self._finish(state, eos=True)

    def forget(self, stream: str) -> None:
        """Drop a stream's live settings and model (unless it is in the pipeline config)."""
        if stream in self._configured:
            return
        self.settings.pop(stream, None)
        self.stream_models.pop(stream, None)
        self.admission.release(stream)

    # -- infer, score, events, publish ----------------------------------------------------
    def _post(self, job: Job | None) -> None:
        """Score a finished job and emit its frames (events, store, overlays, topics),
        then run what waited for them."""
        if job is None:
            return
        for frame in self.scoring.score(job):
            self.tracking.frame(frame)
        for then in job.then:
            then()

    def _free_slot(self, *busy: Job | None) -> int:
        """An engine input slot no running, queued or ``busy`` job holds."""
        used = {j.slot for j in (self.infer.pending, self._queued, *busy) if j is not None}
        return next(slot for slot in (0, 1) if slot not in used)

    def _pump(self) -> None:
        """Keep the network busy: when it is free, start the next job (the queued one, or
        the ready windows), then score the one that just finished while the new one runs."""
        if not self.infer.busy:
            self._advance(take=True)

    def _advance(self, take: bool = False) -> None:
        """Wait for the running job, start the queued one (topped up with ready windows)
        or, with ``take`` and none queued, the ready windows; emit the finished one."""
        done = self.infer.collect()
        job, self._queued = self._queued, None
        streams = list(self.streams.values())
        if job is not None:
            self.scheduler.fill(job, streams)
        elif take:
            job = self.scheduler.take(streams, self._free_slot(done))
        if job is not None:
            self.infer.submit(job)
        self._post(done)

    def _finish(self, state: StreamState, eos: bool) -> None:
        """A stream (or clip) ended: schedule what is left of it, batched with other
        streams' windows, and close its event and report its end once those frames are
        emitted. Its ring is free at once (a scheduled window carries its frames), so a
        new clip's frames are taken in while the network is still busy with the old."""
        while state.ready or self.scheduler.leftover(state):
            if self._queued is not None:
                self._advance()
            self._queued = self.scheduler.take(list(self.streams.values()),
                                               self._free_slot(), first=state, last=True)
        unscored = max(0, state.ring.count - state.scored)
        state.reset()
        if eos:
            del self.streams[state.stream]
        ended = functools.partial(self._ended, state, eos, unscored)
        latest = self._queued or self.infer.pending
        if latest is not None:
            latest.then.append(ended)
            latest.ending.add(state.stream)
        else:
            ended()

    def _ended(self, state: StreamState, eos: bool, unscored: int) -> None:
        state.counts["unscored"] += unscored
        for stage in self.stages:
            stage.end_of_stream(state)
        state.peak.reset()
        if eos:
            self.publishing.eos(state.stream, {k: state.counts[k] for k in COUNTS})
            log.info("stream %s ended: %s", state.stream, dict(state.counts))

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
            self.receiver.drain()
        if self.control is not None and self.control.socket in events:
            self.control.serve_pending()
        self._pump()
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
            self.publishing.status(self.status())
            self.tracking.tick()   # finished clips into the store, retention when due

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
                while self.infer.pending is not None or self._queued is not None:
                    self._advance()
                for state in list(self.streams.values()):
                    self.tracking.end_of_stream(state)
            finally:
                self.close()

    def close(self) -> None:
        """Stop the stages and close both sockets and the events store."""
        for stage in reversed(self.stages):
            stage.stop()
        self._pull.close()
        self.publisher.close()
        if self.control is not None:
            self.control.close()
        if self._auth is not None:
            self._auth.stop()

