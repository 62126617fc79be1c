"""Turning per-frame verdicts into events with hysteresis, and events into alerts."""

from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class FrameVerdict:
    """One scored frame, as the event tracker sees it."""

    seq: int
    ts: float
    anomalous: bool
    score: float
    boxes: list
    clip: str | None = None
    frame: int | None = None


@dataclass(frozen=True)
class EventConfig:
    """``events:`` in the configs: the hysteresis arguments of :class:`EventTracker`.

    Args:
        open_frames: Consecutive anomalous frames that open an event.
        close_frames: Consecutive normal frames that close it.
        update_every: Anomalous frames between update alerts of an open event (0: none).
        max_frames: Frames after which an open event ends even if anomalous frames go on;
            the next ones open a new event (0: no limit; 1 with open_frames 1: one event
            per anomalous frame, e.g. per inspected part on a conveyor).
    """

    open_frames: int = 3
    close_frames: int = 5
    update_every: int = 10
    max_frames: int = 0

    def __post_init__(self) -> None:
        check_hysteresis(self.open_frames, self.close_frames, self.update_every,
                         self.max_frames)


def check_hysteresis(open_frames: int, close_frames: int, update_every: int,
                     max_frames: int = 0) -> None:
    """Raise ValueError unless the counts make sense."""
    if open_frames < 1 or close_frames < 1 or update_every < 0:
        raise ValueError("open_frames and close_frames must be >= 1 and update_every >= 0, "
                         f"got {open_frames}, {close_frames}, {update_every}")
    if max_frames < 0 or 0 < max_frames < open_frames:
        raise ValueError(f"max_frames must be 0 (no limit) or at least open_frames "
                         f"({open_frames}): an event holds the frames that opened it; got "
                         f"{max_frames}")


class EventTracker:
    """Opens an event after ``open_frames`` consecutive anomalous frames and closes it
    after ``close_frames`` consecutive normal ones, or once it holds ``max_frames``.

    Alerts are JSON-ready dicts with ``type`` (start, update, end), ``id``, ``stream``,
    ``start_seq``, ``start_ts``, ``end_seq``, ``end_ts`` (None until the end), ``score``,
    ``peak_score``, ``threshold``, ``boxes`` and more (see docs/wire.md).

    Args:
        stream: Stream id.
        threshold: The frame rule's threshold, reported in alerts.
        open_frames: Consecutive anomalous frames that open an event.
        close_frames: Consecutive normal frames that close it.
        update_every: Anomalous frames between ``update`` alerts of an open event (0: none).
        max_frames: Frames after which an open event ends (its ``end`` alert) even while
            anomalous frames go on; the next anomalous frames open a new one (0: no limit).
    """

    def __init__(self, stream: str, threshold: float, open_frames: int = 3,
                 close_frames: int = 5, update_every: int = 10, max_frames: int = 0) -> None:
        check_hysteresis(open_frames, close_frames, update_every, max_frames)
        self.stream = stream
        self.threshold = threshold
        self.open_frames = open_frames
        self.close_frames = close_frames
        self.update_every = update_every
        self.max_frames = max_frames
        self._run: list[FrameVerdict] = []
        self._event: dict | None = None
        self._normal = 0
        self._since_update = 0

    @property
    def open_event(self) -> dict | None:
        """The open event's latest state, or None."""
        return self._event

    def update(self, v: FrameVerdict) -> list[dict]:
        """Feed one frame (in sequence order); returns the alerts it raises."""
        if self._event is None:
            if not v.anomalous:
                self._run.clear()
                return []
            self._run.append(v)
            if len(self._run) < self.open_frames:
                return []
            return [self._start(), *self._full()]
        if not v.anomalous:
            self._normal += 1
            return [self.close()] if self._normal >= self.close_frames else []
        e = self._event
        self._normal = 0
        e.update(end_seq_candidate=v.seq, end_ts_candidate=v.ts, frames=e["frames"] + 1,
                 score=v.score, boxes=v.boxes, seq=v.seq, ts=v.ts, clip=v.clip, frame=v.frame)
        if v.score > e["peak_score"]:
            e.update(peak_score=v.score, peak_seq=v.seq, peak_boxes=v.boxes)
        self._since_update += 1
        alerts = []
        if self.update_every and self._since_update >= self.update_every:
            self._since_update = 0
            alerts.append(self._alert("update"))
        return alerts + self._full()

    def _full(self) -> list[dict]:
        """The open event's ``end`` alert if it holds ``max_frames``, else nothing."""
        if self.max_frames and self._event["frames"] >= self.max_frames:
            return [self.close()]
        return []

    def _start(self) -> dict:
        first, last = self._run[0], self._run[-1]
        peak = max(self._run, key=lambda r: r.score)
        self._event = {"id": uuid.uuid4().hex, "stream": self.stream,
                       "start_seq": first.seq, "start_ts": first.ts,
                       "end_seq_candidate": last.seq, "end_ts_candidate": last.ts,
                       "frames": len(self._run), "score": last.score, "boxes": last.boxes,
                       "peak_score": peak.score, "peak_seq": peak.seq, "peak_boxes": peak.boxes,
                       "seq": last.seq, "ts": last.ts, "clip": last.clip, "frame": last.frame}
        self._run.clear()
        self._normal = 0
        self._since_update = 0
        return self._alert("start")

    def _alert(self, kind: str, end: bool = False) -> dict:
        e = self._event
        return {"type": kind, "id": e["id"], "stream": self.stream,
                "start_seq": e["start_seq"], "start_ts": e["start_ts"],
                "end_seq": e["end_seq_candidate"] if end else None,
                "end_ts": e["end_ts_candidate"] if end else None,
                "seq": e["seq"], "ts": e["ts"], "score": e["score"],
                "peak_score": e["peak_score"], "peak_seq": e["peak_seq"],
                "threshold": self.threshold, "frames": e["frames"],
                "boxes": e["peak_boxes"] if end else e["boxes"],
                "clip": e["clip"], "frame": e["frame"]}

    def close(self) -> dict | None:
        """End the open event now (stream ended, detector stopping); its ``end`` alert."""
        self._run.clear()
        if self._event is None:
            return None
        alert = self._alert("end", end=True)
        self._event = None
        self._normal = 0
        return alert
