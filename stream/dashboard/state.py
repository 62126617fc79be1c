"""What the dashboard knows of the detector: its status, each stream's scores and latest
overlay, and the events it saw, built from the detector's published messages."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import replace

from stream.wire.topics import (
    AlertMessage,
    EosMessage,
    IdleStream,
    OverlayMessage,
    ScoreMessage,
    StatusMessage,
    StreamStatus,
)

#: Fields of a stream's ``status`` entry that count frames (cumulative per stream session).
COUNTERS = ("received", "scored", "dropped", "overrun")
#: Seconds of ``status`` messages frame rates are averaged over (the detector takes in
#: frames in bursts, a batch at a time, so one interval alone reads jumpy).
RATE_WINDOW_S = 5.0


def event_summary(alert: dict) -> dict:
    """One event as the dashboard shows it, from its latest alert: the dict form of a
    live :class:`AlertMessage`, or a row of the events store (which may predate fields,
    hence every field read with a default).

    Returns:
        ``id, stream, open, start_ts, end_ts, start_seq, end_seq, peak_score, peak_seq,
        threshold, frames, clip, frame, boxes, recovered, clip_path, label`` (``label,
        who, via, at`` or None) and the URLs of its
        snapshot (``?peak=`` changes with the peak, so a browser never shows a stale one),
        frames and MP4 clip (``clip_url``: None until its ``end`` names a clip).
    """
    event_id = alert["id"]
    return {"id": event_id, "stream": alert["stream"],
            "open": alert.get("open", alert["type"] != "end"),
            "start_ts": alert.get("start_ts"), "end_ts": alert.get("end_ts"),
            "start_seq": alert.get("start_seq"), "end_seq": alert.get("end_seq"),
            "last_ts": alert.get("ts"), "peak_score": alert.get("peak_score"),
            "peak_seq": alert.get("peak_seq"), "threshold": alert.get("threshold"),
            "frames": alert.get("frames"), "clip": alert.get("clip"),
            "frame": alert.get("frame"), "boxes": alert.get("boxes", []),
            "recovered": bool(alert.get("recovered")), "label": alert.get("label"),
            "snapshot": f"/api/events/{event_id}/snapshot.jpg?peak={alert.get('peak_seq')}",
            "frames_url": f"/api/events/{event_id}/frames",
            "clip_path": alert.get("clip_path"),
            "clip_url": f"/api/events/{event_id}/clip.mp4" if alert.get("clip_path") else None}


class StreamView:
    """One stream as last reported: counters, rates, recent scores, latest overlay.

    Args:
        stream: Stream id.
        history_s: Seconds of scores kept for the chart.
        max_points: Most scores kept, whatever their times.
    """

    def __init__(self, stream: str, history_s: float, max_points: int) -> None:
        self.id = stream
        self.history_s = history_s
        self.status: StreamStatus | IdleStream | None = None
        self.rates = {"capture": 0.0, "processed": 0.0, "dropped": 0.0}
        self.scores: deque[tuple[float, float, int]] = deque(maxlen=max_points)
        self.pending: list[tuple[float, float, int]] = []   # scores not yet sent to pages
        self.last_score: ScoreMessage | None = None
        self.latest: OverlayMessage | None = None
        self.ended = False
        self._marks: deque[tuple[float, tuple[int, ...]]] = deque(maxlen=64)

    def on_status(self, entry: StreamStatus | IdleStream, ts: float) -> None:
        """Take the stream's entry of a ``status`` message sent at detector time ``ts``;
        frame rates come from the change of its counters over the last few seconds."""
        self.status = entry
        if isinstance(entry, IdleStream):   # a stream the detector ended for idleness
            self.rates = dict.fromkeys(self.rates, 0.0)
            self._marks.clear()
            return
        counts = tuple(getattr(entry, k) for k in COUNTERS)
        if self._marks and (ts <= self._marks[-1][0] or any(
                now < then for now, then in zip(counts, self._marks[-1][1], strict=True))):
            self._marks.clear()                     # a new session of the stream
        self._marks.append((ts, counts))
        while len(self._marks) > 2 and self._marks[1][0] <= ts - RATE_WINDOW_S:
            self._marks.popleft()
        if len(self._marks) >= 2:
            mark_ts, mark = self._marks[0]
            received, scored, dropped, overrun = ((now - then) / (ts - mark_ts)
                                                  for now, then in zip(counts, mark, strict=True))
            self.rates = {"capture": round(received + dropped, 2),
                          "processed": round(scored, 2),
                          "dropped": round(dropped + overrun, 2)}
        self.ended = False

    def on_score(self, score: ScoreMessage) -> None:
        point = (float(score.ts), float(score.scores.score), int(score.anomalous))
        self.scores.append(point)
        self.pending.append(point)
        while self.scores and self.scores[0][0] < point[0] - self.history_s:
            self.scores.popleft()
        self.last_score = score
        self.ended = False

    def mark_ended(self) -> None:
        """The stream ended: the next status of it (if it comes back) starts afresh."""
        self._marks.clear()

    def take_pending(self) -> list[tuple[float, float, int]]:
        """Scores received since the last call."""
        points, self.pending = self.pending, []
        return points

    @property
    def online(self) -> bool:
        online = self.last_score is not None if self.status is None else self.status.online
        return online and not self.ended

    def summary(self) -> dict:
        """The stream as ``/api/streams`` and the page show it (None for what the
        detector has not said, or no longer says: a stream ended for idleness)."""
        s = self.status if isinstance(self.status, StreamStatus) else None
        counts = dict.fromkeys((*COUNTERS, "queue", "events", "reconnects"))
        if s is not None:
            counts = {k: getattr(s, k) for k in counts}
        last = self.last_score
        latest = {"score": None, "seq": None, "threshold": None, "rule": None,
                  "latency_ms": None}
        if last is not None:
            latest = {"score": last.scores.score, "seq": last.seq, "threshold": last.threshold,
                      "rule": last.rule, "latency_ms": last.latency_ms}
        clip = s.clip if s is not None else (last.clip if last is not None else None)
        # what the detector last said of the stream's live settings (its control channel)
        settings = {"threshold": None, "detect": None, "model": None, "paused": None,
                    "masked": None}
        if s is not None:
            settings = {k: getattr(s, k) for k in settings}
        # its scores against its model's calibration (None: a detector that does not say)
        drift = s.drift.to_dict() if s is not None and s.drift is not None else None
        return {"id": self.id, "online": self.online, "ended": self.ended,
                "fps": dict(self.rates), **counts, "settings": settings,
                "event_open": s is not None and s.event_open, "clip": clip, **latest,
                "drift": drift,
                "latest": f"/api/streams/{self.id}/latest.jpg" if self.latest else None}


class LiveState:
    """Everything learnt from the detector's topics, bounded in memory.

    Args:
        history_s: Seconds of scores kept per stream (the chart's span).
        max_streams: Streams remembered; beyond, the one heard from least recently goes.
        max_events: Events remembered from live alerts (the store keeps them all).
        clock: Monotonic clock (seconds).
    """

    def __init__(self, history_s: float = 300.0, max_streams: int = 256,
                 max_events: int = 500, clock: Callable[[], float] = time.monotonic) -> None:
        self.history_s = history_s
        self.max_streams = max_streams
        self.max_events = max_events
        self.clock = clock
        self.streams: OrderedDict[str, StreamView] = OrderedDict()
        self.events: OrderedDict[str, dict] = OrderedDict()
        self.status: StatusMessage | None = None
        self.status_at: float | None = None
        self.started = clock()

    def stream(self, stream: str) -> StreamView:
        """The view of ``stream``, created if new (and the least recent one dropped)."""
        view = self.streams.get(stream)
        if view is None:
            # bounded by time (history_s) and by count: 50 scores/s for the whole span
            view = StreamView(stream, self.history_s, int(self.history_s * 50))
            self.streams[stream] = view
            while len(self.streams) > self.max_streams:
                self.streams.popitem(last=False)
        self.streams.move_to_end(stream)
        return view

    def on_status(self, status: StatusMessage) -> None:
        """Take a ``status`` message."""
        self.status = status
        self.status_at = self.clock()
        for stream, entry in status.streams.items():
            self.stream(stream).on_status(entry, float(status.ts))

    def on_score(self, score: ScoreMessage) -> None:
        self.stream(score.stream).on_score(score)

    def on_overlay(self, overlay: OverlayMessage) -> None:
        self.stream(overlay.stream).latest = overlay

    def on_alert(self, alert: AlertMessage) -> dict:
        """Take an alert; returns the event's summary."""
        event = event_summary(alert.to_dict())
        if (known := self.events.get(event["id"])) is not None:
            event["label"] = known.get("label")      # labelled while it was live
        self.events[event["id"]] = event
        self.events.move_to_end(event["id"])
        while len(self.events) > self.max_events:
            self.events.popitem(last=False)
        return event

    def on_eos(self, eos: EosMessage) -> None:
        view = self.stream(eos.stream)
        view.ended = True
        view.rates = dict.fromkeys(view.rates, 0.0)
        # the detector forgets an ended stream: its last status no longer holds
        if isinstance(view.status, StreamStatus):
            view.status = replace(view.status, online=False, event_open=False, queue=0)
        view.mark_ended()

    @property
    def interval(self) -> float:
        """The detector's status interval (1 s until it has said)."""
        return 1.0 if self.status is None else float(self.status.status_interval)

    def reachable(self) -> bool:
        """Whether a ``status`` came within three status intervals."""
        return self.status_at is not None and self.clock() - self.status_at < 3 * self.interval

    def detector(self) -> dict:
        """The detector as the page shows it: reachable or not, and since when."""
        age = None if self.status_at is None else round(self.clock() - self.status_at, 1)
        out = {"reachable": self.reachable(), "last_status_s": age, "uptime_s": None,
               "rule": None, "threshold": None, "rejected": {}, "subscriptions": 0}
        s = self.status
        if s is not None:
            out.update(uptime_s=s.uptime_s, rule=s.rule, threshold=s.threshold,
                       rejected=dict(s.rejected), subscriptions=len(s.subscriptions or []))
        return out

    def live_events(self, stream: str | None = None, since: float | None = None,
                    limit: int = 100) -> list[dict]:
        """Events seen live, newest first (for when there is no events store to read)."""
        out = [e for e in reversed(self.events.values())
               if (stream is None or e["stream"] == stream)
               and (since is None or (e["last_ts"] or 0) >= since)]
        out.sort(key=lambda e: e["start_ts"] or 0, reverse=True)
        return out[:limit]
