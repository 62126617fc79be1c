"""Events: the stage that turns scored frames into events and alerts, stores every alert
(with its event's peak snapshot) and records each event's clip, before anything is
published; it puts the alerts on the items for the publish stage."""

from __future__ import annotations

import logging

from stream.detector.annotate import Annotator
from stream.detector.annotating import clip_frame, draw
from stream.detector.clips import ClipRecorder
from stream.detector.drift import DriftConfig, DriftReference, DriftTracker
from stream.detector.events import FrameVerdict
from stream.detector.items import ScoredFrame, StreamEnd, Tick
from stream.detector.retention import Retention
from stream.detector.stages import Stage
from stream.detector.state import StreamState
from stream.store import EventStore, recovered_end
from stream.wire.topics import AlertMessage, TopicMessage

log = logging.getLogger(__name__)


class Events(Stage):
    """Per-frame verdicts into events; every alert is stored (with its event's peak
    snapshot) before it is put on its item for publishing, and events a killed detector
    left open are ended at start (published with the first tick). Each event's MP4 clip
    is recorded (its path in the ``end`` alert) and the store is kept within its budget
    and age, both at each :class:`Tick`, between frames.

    Args:
        store: The events store (None: alerts are only published).
        annotator: Draws an event's peak snapshot (only with a store).
        clips: Records each event's clip (None: no clips).
        retention: Deletes the oldest events beyond the budget or age (None: none).
        drift: When a stream's scores have drifted from its model's calibration (each
            stream's :class:`DriftTracker`, reported in ``status``; default: on).
    """

    def __init__(self, store: EventStore | None, annotator: Annotator,
                 clips: ClipRecorder | None = None, retention: Retention | None = None,
                 drift: DriftConfig | None = None) -> None:
        self.store = store
        self.annotator = annotator
        self.clips = clips
        self.retention = retention
        self.drift = drift or DriftConfig()
        self._recovered: list[TopicMessage] = []   # published with the first tick

    def on_start(self) -> None:
        if self.store is None:
            return
        for last in self.store.open_events():
            log.warning("event %s on %s was left open by a previous run: ending it",
                        last["id"][:8], last["stream"])
            self.alert(recovered_end(last), self._recovered)
        if self.retention is not None:
            self.retention.check_files()
            self.retention.run()

    def process(self, item: ScoredFrame | Tick) -> None:
        """A scored frame: track, store and record it. A tick: store the clips finished
        since the last; apply retention when due."""
        if isinstance(item, Tick):
            item.messages[:0], self._recovered = self._recovered, []
            self._housekeeping()
        else:
            self.frame(item)

    def _housekeeping(self) -> None:
        if self.store is None:
            return
        if self.clips is not None:
            for row in self.clips.collect():
                self.store.put_clip(row)
        if self.retention is not None and self.retention.due():
            self.retention.run(self.clips.busy() if self.clips is not None else set())

    def frame(self, f: ScoredFrame) -> None:
        """Track, store (its overlay drawn when it becomes its event's peak) and record
        one scored frame; its alerts go on ``f.messages``."""
        state = f.state
        anomalous = f.anomalous
        peak = self.store is not None and state.peak.wants(
            anomalous, f.score, state.tracker.open_event is not None)
        if peak:
            f.jpeg = draw(self.annotator, f)
            state.peak.keep(f.score, f.seq, f.jpeg)
        for alert in state.tracker.update(FrameVerdict(f.seq, f.ts, anomalous, f.score,
                                                       f.boxes, f.clip, f.frame)):
            self.alert(alert, f.messages, state)
        if self.clips is not None:
            self.clips.frame(state.stream, clip_frame(f))
        self.track_drift(f)

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

    def on_stream_end(self, end: StreamEnd) -> None:
        state = end.state
        closed = state.tracker.close()
        if closed is not None:
            self.alert(closed, end.messages, state)
        if self.clips is not None:
            self.clips.end_of_stream(state.stream)
        state.peak.reset()

    def alert(self, alert: dict, out: list[TopicMessage], state: StreamState | None = None
              ) -> None:
        """Store (with the event's snapshot when its peak changed), then put it on ``out``
        for publishing: an alert that is published is always in the store, and so is its
        peak's snapshot."""
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
        out.append(AlertMessage(**alert))

    def on_stop(self) -> None:
        if self.clips is not None:
            self.clips.stop()   # open clips finished, the writer joined
            self._housekeeping()
        if self.store is not None:
            self.store.close()
