"""The detector's stages after the ring: schedule windows, infer, score, events, publish.

Each stage is a small class with one job; the loop (:mod:`stream.detector.loop`) passes
them their collaborators and calls them in order. Inference runs on a worker thread
(MXNet releases the GIL while it computes), so the previous batch is scored, drawn and
published while the network runs the next one.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import count

import numpy as np
import zmq

from models.scoring import FrameScores
from stream.detector.annotate import Annotator, find_boxes
from stream.detector.clips import ClipFrame, ClipRecorder
from stream.detector.drift import DriftConfig, DriftReference, DriftTracker
from stream.detector.events import FrameVerdict
from stream.detector.histogram import Histogram
from stream.detector.retention import Retention
from stream.detector.reuse import FeatureStore
from stream.detector.runtime import ModelRuntime
from stream.detector.state import StreamState
from stream.store import EventStore, recovered_end
from stream.wire.publisher import Publisher
from stream.wire.topics import (
    AlertMessage,
    EosMessage,
    OverlayMessage,
    ScoreMessage,
    Scores,
    StatusMessage,
    TopicMessage,
)

log = logging.getLogger(__name__)


class InferenceError(RuntimeError):
    """The network failed on a batch: the detector stops (a restart recovers its events)."""


class Stage:
    """Lifecycle hooks every stage may implement."""

    def start(self) -> None:
        """Called once before the first frame."""

    def end_of_stream(self, state: StreamState) -> None:
        """Called when a stream (or one of its clips) has been scored to its end."""

    def stop(self) -> None:
        """Called once when the detector stops; release what :meth:`start` took."""


@dataclass
class Window:
    """One window handed to the network, and what its scored frames need afterwards."""

    state: StreamState
    start: int          # absolute index of its first frame
    first: int          # absolute index of its first scored frame
    clip: str | None
    segment: int        # the stream's segment its frames are from (StreamState.segment)
    seq: np.ndarray
    ts: np.ndarray
    frame: np.ndarray
    src: np.ndarray     # the scored frames' source images (copied: the ring moves on)
    key: int = 0        # its first frame's key in the stream's feature store (reuse)
    row: int | None = 0  # its row in the job's input and output (None: gated, still)


@dataclass
class Job:
    """One forward pass: windows of one model in one engine slot."""

    runtime: ModelRuntime
    slot: int
    tail: bool
    windows: list[Window]
    output: np.ndarray | None = None
    error: BaseException | None = None
    seconds: float = 0.0
    done: threading.Event = field(default_factory=threading.Event)
    #: Called after the job's frames are emitted (a stream that ended is closed then).
    then: list[Callable[[], None]] = field(default_factory=list)
    #: Streams whose end waits on this job: none of their later frames may join it.
    ending: set[str] = field(default_factory=set)
    #: Encoder reuse: the frames this job encodes, in the order they were copied into
    #: the runtime's ``reuse.fresh[slot]``: their stream's store and key.
    fresh: list[tuple[FeatureStore, int]] = field(default_factory=list)

    @property
    def rows(self) -> int:
        """Windows the network runs on (the others are gated: still)."""
        return sum(w.row is not None for w in self.windows)

    def run(self) -> np.ndarray | None:
        """The forward pass (on the inference thread); None when every window is gated."""
        if not self.rows:
            return None
        return self.runtime.run(self.fresh, [(w.state.features, w.key) for w in self.windows
                                             if w.row is not None], self.tail, self.slot)


class Scheduler(Stage):
    """Takes ready windows (the longest backlog first, so no stream starves), one model
    and one network per job, and writes them into an engine input slot."""

    def take(self, streams: list[StreamState], slot: int, first: StreamState | None = None,
             last: bool = False) -> Job | None:
        """The next job, or None when no window is ready.

        Windows needing the full network (a stream's first window) run alone; the others
        go together up to the engine's batch. ``first``'s windows come before any other
        stream's, and with ``last`` its frames that fill no window of their own get one
        aligned to its newest frame (the stream or clip ended): other streams' windows
        fill the rest of the batch.
        """
        ready = [s for s in streams if s.ready or (last and s is first and self.leftover(s))]
        if not ready:
            return None
        ready.sort(key=lambda s: (s is not first, s.next_start - s.ring.count))
        job = Job(ready[0].runtime, slot, True, [])
        self._gather(job, [s for s in ready if s.runtime is job.runtime],
                     first if last else None)
        return job

    def fill(self, job: Job, streams: list[StreamState]) -> None:
        """Top a queued job up to the engine's batch with other streams' ready windows
        (never a stream it already holds: that one's end may wait on the job)."""
        if not job.tail:
            return
        held = {w.state.stream for w in job.windows} | job.ending
        others = sorted((s for s in streams if s.runtime is job.runtime and s.ready
                         and s.stream not in held), key=lambda s: s.next_start - s.ring.count)
        self._gather(job, others)

    def _gather(self, job: Job, states: list[StreamState],
                ending: StreamState | None = None) -> None:
        """Add the states' windows, in order, until the batch is full or a window needs
        the full network (that one runs alone: it is taken only into an empty job).
        ``ending`` also gets a window aligned to its newest frame for its leftovers."""
        runtime = job.runtime
        for state in states:
            while job.rows < runtime.max_batch:
                if state.ready:
                    start = state.next_start
                elif state is ending and self.leftover(state):
                    start = state.ring.count - runtime.window
                else:
                    break
                begin = runtime.first_scored(start, state.scored)
                still = self._still(state, start, job)
                full = not still and runtime.needs_full(start, begin)
                if full and job.rows:   # the tail windows taken so far go first
                    return
                job.windows.append(self._window(state, start, begin, job, still))
                if full:
                    job.tail = False
                    return

    @staticmethod
    def leftover(state: StreamState) -> bool:
        """Whether a stream has unscored frames that no regular window will score, and
        enough frames for a window aligned to its newest."""
        ring = state.ring
        return ring.count > state.scored and ring.count >= state.runtime.window \
            and not state.ready

    @staticmethod
    def _still(state: StreamState, start: int, job: Job) -> bool:
        """Read the window into the job's next input row; whether the model's motion gate
        finds it still under the stream's threshold (it then needs no network)."""
        runtime = state.runtime
        row = runtime.engine.batches[job.slot][job.rows]
        state.ring.read("x", start, runtime.window, out=row)
        return runtime.gate is not None and runtime.gate.still(row, state.threshold)

    @staticmethod
    def _window(state: StreamState, start: int, first: int, job: Job, still: bool) -> Window:
        """The window (its frames already in the job's next row, :meth:`_still`)."""
        runtime, ring = state.runtime, state.ring
        network_row = None if still else job.rows
        if runtime.reuse is not None and not still:
            # the frames of the window's context no earlier window encoded (all of them
            # after a cut or an overrun): copied for the encoder, the ring moves on
            fresh = runtime.reuse.fresh[job.slot]
            previous = runtime.reuse.previous
            for index in range(max(start, state.encoded), start + runtime.context):
                row = slice(len(job.fresh), len(job.fresh) + 1)
                ring.read("x", index, 1, out=fresh[row])
                if previous is not None:   # the window's oldest frame gets itself (unread)
                    ring.read("x", max(index - 1, start), 1, out=previous[job.slot][row])
                job.fresh.append((state.features, state.base + index))
            state.encoded = max(state.encoded, start + runtime.context)
        end = start + runtime.window
        if first > state.scored:      # frames this model can never score (a predictor's first)
            state.counts["unscored"] += first - state.scored
        n = end - first
        w = Window(state, start, first, state.clip, state.segment, ring.read("seq", first, n),
                   ring.read("ts", first, n), ring.read("frame", first, n),
                   ring.read("src", first, n), state.base + start, network_row)
        state.next_start = start + runtime.stride
        state.scored = end
        return w


class Inference(Stage):
    """Runs jobs on a worker thread, one at a time; ``socket`` becomes readable when one
    is done (poll it with the frame socket).

    Args:
        context: ZeroMQ context (for the in-process completion signal).
        histogram: Forward-pass times are observed into it.
    """

    _ids = count()

    def __init__(self, context: zmq.Context, histogram: Histogram) -> None:
        self.histogram = histogram
        address = f"inproc://vadstream-inference-{next(self._ids)}-{id(self)}"
        self.socket = context.socket(zmq.PAIR)
        self.socket.bind(address)
        self._signal = context.socket(zmq.PAIR)
        self._signal.connect(address)
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="inference", daemon=True)
        self.pending: Job | None = None

    def start(self) -> None:
        self._thread.start()

    def submit(self, job: Job) -> None:
        """Start ``job`` (one job at a time: the previous must have been collected)."""
        if self.pending is not None:
            raise RuntimeError("a job is already running")
        self.pending = job
        self._jobs.put(job)

    def collect(self) -> Job | None:
        """Wait for the running job and return it (None when none runs)."""
        job, self.pending = self.pending, None
        if job is None:
            return None
        job.done.wait()
        self.socket.recv()
        if job.error is not None:
            raise InferenceError(f"the network failed on a batch of {len(job.windows)} "
                                 f"window(s): {job.error}") from job.error
        return job

    @property
    def busy(self) -> bool:
        return self.pending is not None and not self.pending.done.is_set()

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            started = time.perf_counter()
            try:
                job.output = job.run()
            except BaseException as err:  # noqa: BLE001 - handed to the loop, raised there
                job.error = err
            job.seconds = time.perf_counter() - started
            if job.rows:   # a job of gated windows only ran no network
                self.histogram.observe(job.seconds)
            job.done.set()
            self._signal.send(b"")

    def stop(self) -> None:
        self._jobs.put(None)
        if self._thread.is_alive():
            self._thread.join(30)
        if self._thread.is_alive():   # still in the network: its socket is still its own
            log.warning("the inference thread did not stop within 30 s")
            return
        self._signal.close(linger=0)
        self.socket.close(linger=0)


@dataclass
class ScoredFrame:
    """One frame's verdict, with what annotating and publishing it needs."""

    state: StreamState
    seq: int
    ts: float
    frame: int | None
    clip: str | None
    src: np.ndarray
    scores: FrameScores
    j: int            # its index in ``scores``
    score: float      # its rule value after the stream's smoothing (the rule value itself
    anomalous: bool   # at smooth 1), and the verdict on it
    threshold: float  # the stream's threshold the verdict is against
    mask: np.ndarray  # its anomalous pixels (model resolution) under that threshold
    gated: bool = False  # scored without the network (a still window)


class Scoring(Stage):
    """Turns a finished job into per-frame scores with its model's scorer, each frame's
    rule value passed through its stream's smoother (``scorer.smooth``) before the
    threshold."""

    def score(self, job: Job) -> list[ScoredFrame]:
        runtime = job.runtime
        batch = runtime.engine.batches[job.slot]
        # outputs cover the newest frames
        offset = 0 if job.output is None else runtime.window - job.output.shape[1]
        frames = []
        scorer = runtime.scorer
        for w in job.windows:
            state = w.state
            if w.row is None:   # still: the gate's score, no network
                scores = runtime.gated_scores(len(w.seq))
                state.counts["gated"] += len(w.seq)
            else:
                ignore = state.ignore()
                extra = {} if ignore is None else {"ignore": ignore}
                scores = scorer.score(job.output[w.row], batch[w.row, offset:],
                                      w.first - w.start - offset, **extra)
            state.counts["scored"] += len(w.seq)
            threshold = state.threshold
            # A rule whose map is thresholded at the frame threshold marks its pixels at
            # the stream's own threshold where that is overridden.
            remask = threshold != scorer.threshold and scorer.map_threshold == scorer.threshold
            for j in range(len(w.seq)):
                frame, seq = int(w.frame[j]), int(w.seq[j])
                value = state.smooth(w.segment, float(scores.score[j]))
                mask = scores.map[j] > threshold if remask else scores.mask[j]
                frames.append(ScoredFrame(state, seq, float(w.ts[j]),
                                          None if frame < 0 else frame, w.clip, w.src[j],
                                          scores, j, value, value >= threshold, threshold,
                                          mask, w.row is None))
        return frames


def _finite_or_none(value: float) -> float | None:
    """A value for an optional score field: None where it does not exist (NaN) or a
    network output went wrong (inf), never a JSON ``NaN``."""
    return float(value) if np.isfinite(value) else None


class Publishing(Stage):
    """Annotates frames and publishes every topic; overlays are drawn only for someone
    who subscribes to them, or for an event's peak snapshot."""

    def __init__(self, publisher: Publisher, annotator: Annotator) -> None:
        self.publisher = publisher
        self.annotator = annotator

    def wants_overlay(self, stream: str) -> bool:
        return self.publisher.wants(f"overlay.{stream}")

    def clip_frame(self, f: ScoredFrame, boxes: list) -> ClipFrame:
        """What drawing the frame's overlay takes (references only: nothing drawn yet)."""
        scorer = f.state.runtime.scorer
        # A probability needs its digits (0.97 / 0.4); pixel sums read fine at one decimal.
        fmt = getattr(scorer, "label_format", ".1f")
        label = f"{scorer.rule} {f.score:{fmt}} / {f.threshold:{fmt}}"
        mask = f.mask if f.anomalous else None
        # Scorers whose map is a heat map (a classifier's activation map) draw it in colour.
        heat = f.scores.map[f.j] if f.anomalous and getattr(scorer, "heat", False) else None
        return ClipFrame(f.seq, f.ts, f.src, mask, boxes, label, f.anomalous, heat)

    def overlay(self, f: ScoredFrame, boxes: list) -> bytes:
        c = self.clip_frame(f, boxes)
        return self.annotator.encode(self.annotator.draw(c.source, c.mask, c.boxes, c.label,
                                                         c.anomalous, heat=c.heat))

    def score(self, f: ScoredFrame) -> None:
        s, j, scorer = f.scores, f.j, f.state.runtime.scorer
        self._send(ScoreMessage(
            stream=f.state.stream, seq=f.seq, ts=f.ts, clip=f.clip, frame=f.frame,
            scores=Scores(error=float(s.error[j]), area=int(s.area[j]),
                          peak=float(s.peak[j]), motion=float(s.motion[j]), score=f.score,
                          relative=_finite_or_none(s.relative[j]),
                          top=_finite_or_none(s.top[j])),
            threshold=f.threshold, rule=scorer.rule, anomalous=f.anomalous,
            latency_ms=round((time.time() - f.ts) * 1000, 2), gated=f.gated))

    def overlay_message(self, f: ScoredFrame, boxes: list, jpeg: bytes) -> None:
        self._send(OverlayMessage(stream=f.state.stream, seq=f.seq, ts=f.ts, clip=f.clip,
                                  frame=f.frame, anomalous=f.anomalous, score=f.score,
                                  boxes=boxes, jpeg=jpeg))

    def alert(self, alert: dict) -> None:
        self._send(AlertMessage(**alert))

    def eos(self, stream: str, counts: dict) -> None:
        self._send(EosMessage(stream=stream, **counts))

    def status(self, status: dict) -> None:
        self._send(StatusMessage.from_dict(status, topic="status"))

    def _send(self, message: TopicMessage) -> None:
        self.publisher.socket.send_multipart(message.to_parts(), copy=False)


class Events(Stage):
    """Per-frame verdicts into events; every alert is stored (with its event's peak
    snapshot) before it is published, and events a killed detector left open are ended
    at start. Each event's MP4 clip is recorded (its path in the ``end`` alert) and the
    store is kept within its budget and age, both from :meth:`tick`, between frames.

    Args:
        publishing: Where alerts go after the store.
        store: The events store (None: alerts are only published).
        clips: Records each event's clip (None: no clips).
        retention: Deletes the oldest events beyond the budget or age (None: none).
        drift: When a stream's scores have drifted from its model's calibration (each
            stream's :class:`DriftTracker`, reported in ``status``; default: on).
    """

    def __init__(self, publishing: Publishing, store: EventStore | None,
                 clips: ClipRecorder | None = None, retention: Retention | None = None,
                 drift: DriftConfig | None = None) -> None:
        self.publishing = publishing
        self.store = store
        self.clips = clips
        self.retention = retention
        self.drift = drift or DriftConfig()

    def start(self) -> None:
        if self.store is None:
            return
        for last in self.store.open_events():
            log.warning("event %s on %s was left open by a previous run: ending it",
                        last["id"][:8], last["stream"])
            self.alert(recovered_end(last))
        if self.retention is not None:
            self.retention.check_files()
            self.retention.run()

    def tick(self) -> None:
        """Store the clips finished since the last call; apply retention when due."""
        if self.store is None:
            return
        if self.clips is not None:
            for row in self.clips.collect():
                self.store.put_clip(row)
        if self.retention is not None and self.retention.due():
            self.retention.run(self.clips.busy() if self.clips is not None else set())

    def frame(self, f: ScoredFrame) -> None:
        """Annotate (when wanted), track, store and publish one scored frame, in order."""
        state = f.state
        anomalous = f.anomalous
        boxes = find_boxes(f.mask, state.shape) if anomalous else []
        wanted = self.publishing.wants_overlay(state.stream)
        peak = self.store is not None and state.peak.wants(
            anomalous, f.score, state.tracker.open_event is not None)
        jpeg = self.publishing.overlay(f, boxes) if wanted or peak else None
        if peak:
            state.peak.keep(f.score, f.seq, jpeg)
        for alert in state.tracker.update(FrameVerdict(f.seq, f.ts, anomalous, f.score, boxes,
                                                       f.clip, f.frame)):
            self.alert(alert, state)
        if self.clips is not None:
            self.clips.frame(state.stream, self.publishing.clip_frame(f, boxes))
        self.track_drift(f)
        self.publishing.score(f)
        if wanted:
            self.publishing.overlay_message(f, boxes, jpeg)

    def track_drift(self, f: ScoredFrame) -> None:
        """Feed the frame to its stream's drift tracker (made on its first frame: a stream
        that changes model starts afresh, with the new model's reference)."""
        if not self.drift.enabled:
            return
        state = f.state
        if state.drift is None:
            scorer = state.runtime.scorer
            reference = DriftReference.of(state.runtime.engine.meta.calibration, scorer.rule,
                                          scorer.threshold, self.drift)
            state.drift = DriftTracker(reference, self.drift)
        tracker = state.drift
        change = tracker.push(f.score, f.threshold, f.ts)
        if change is not None:
            log.warning("stream %s: scores %s (median of the last %d frames %.4g; %s %.4g)",
                        state.stream, "drifted" if change else "back within calibration",
                        tracker.frames, tracker.figure, tracker.reference.source,
                        tracker.reference.limit)

    def end_of_stream(self, state: StreamState) -> None:
        end = state.tracker.close()
        if end is not None:
            self.alert(end, state)
        if self.clips is not None:
            self.clips.end_of_stream(state.stream)

    def alert(self, alert: dict, state: StreamState | None = None) -> None:
        """Store (with the event's snapshot when its peak changed), then publish: an alert
        that was published is always in the store, and so is its peak's snapshot."""
        log.info("alert %s %s on %s (score %.1f)", alert["type"], alert["id"][:8],
                 alert["stream"], alert["score"])
        if self.clips is not None and state is not None:
            clip_path = self.clips.alert(alert)
            if clip_path is not None:
                alert["clip_path"] = clip_path
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
        self.publishing.alert(alert)

    def stop(self) -> None:
        if self.clips is not None:
            self.clips.stop()   # open clips finished, the writer joined
            self.tick()
        if self.store is not None:
            self.store.close()
