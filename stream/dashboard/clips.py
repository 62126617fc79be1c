"""Frames around each event the dashboard watched live, kept in memory within a budget."""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

from stream.wire.topics import AlertMessage, OverlayMessage


@dataclass(frozen=True)
class ClipFrame:
    """One overlay frame of a clip."""

    seq: int
    ts: float
    score: float
    anomalous: bool
    jpeg: bytes


@dataclass
class Clip:
    """The overlays of one event: some before its start, all during it (up to a cap),
    some after its end."""

    event_id: str
    stream: str
    frames: list[ClipFrame] = field(default_factory=list)
    after_end: int | None = None   # frames still to take after the end; None while open
    truncated: bool = False

    @property
    def nbytes(self) -> int:
        return sum(len(f.jpeg) for f in self.frames)

    @property
    def recording(self) -> bool:
        return self.after_end is None or self.after_end > 0


class EventClips:
    """Keeps, for each event it sees start (or sees open), its overlay frames.

    The frames come from the ``overlay.*`` topic, so only events that happened while the
    dashboard ran have frames; the peak snapshot of every event is in the events store.

    Args:
        before: Frames kept from before an event's first alert.
        after: Frames kept after its end.
        max_frames: Most frames per clip (the first ones are kept).
        budget_mb: Memory all clips may take; the oldest finished clips go first.
    """

    def __init__(self, before: int = 20, after: int = 20, max_frames: int = 200,
                 budget_mb: float = 64.0) -> None:
        if min(before, after) < 0 or max_frames < 1 or budget_mb <= 0:
            raise ValueError(f"clip frames must be >= 0, max_frames >= 1 and budget_mb > 0, "
                             f"got {before}, {after}, {max_frames}, {budget_mb}")
        self.after = after
        self.max_frames = max_frames
        self.budget = int(budget_mb * 2**20)
        self._before = before
        self._recent: dict[str, deque[ClipFrame]] = {}
        self._open: dict[str, Clip] = {}             # stream -> the clip being recorded
        self.clips: OrderedDict[str, Clip] = OrderedDict()
        self._bytes = 0

    def on_overlay(self, overlay: OverlayMessage) -> None:
        """Take one overlay."""
        stream, jpeg = overlay.stream, overlay.jpeg
        frame = ClipFrame(overlay.seq, float(overlay.ts), float(overlay.score),
                          overlay.anomalous, jpeg)
        recent = self._recent.get(stream)
        if recent is None:
            recent = self._recent[stream] = deque(maxlen=max(1, self._before))
        recent.append(frame)
        clip = self._open.get(stream)
        if clip is None:
            return
        if len(clip.frames) < self.max_frames:
            clip.frames.append(frame)
            self._bytes += len(jpeg)
        else:
            clip.truncated = True
        if clip.after_end is not None:
            clip.after_end -= 1
            if clip.after_end <= 0:
                del self._open[stream]
        self._trim()

    def on_alert(self, alert: AlertMessage) -> None:
        """Start a clip at an event's first alert seen; count down its end."""
        stream, event_id = alert.stream, alert.id
        clip = self.clips.get(event_id)
        if clip is None:
            self._finish(stream)
            # The alert was published before the overlay of its own frame: the frames
            # before it are the run that opened the event and what came before.
            frames = list(self._recent.get(stream, ()))[-self._before:] if self._before else []
            clip = Clip(event_id, stream, frames)
            self._bytes += clip.nbytes
            self.clips[event_id] = clip
            self._open[stream] = clip
        if alert.type == "end" and clip.after_end is None:
            clip.after_end = self.after
            if not self.after:
                self._finish(stream)
        self._trim()

    def on_eos(self, stream: str) -> None:
        """The stream ended: nothing more will come after its last event."""
        self._finish(stream)
        self._recent.pop(stream, None)

    def _finish(self, stream: str) -> None:
        clip = self._open.pop(stream, None)
        if clip is not None:
            clip.after_end = 0

    def _trim(self) -> None:
        while self._bytes > self.budget and self.clips:
            victim = next((c for c in self.clips.values() if not c.recording), None)
            if victim is None:           # only clips being recorded: drop the oldest one
                victim = next(iter(self.clips.values()))
                self._finish(victim.stream)
            self._bytes -= victim.nbytes
            del self.clips[victim.event_id]

    def frame(self, event_id: str, seq: int) -> ClipFrame | None:
        """One frame of an event's clip."""
        clip = self.clips.get(event_id)
        return next((f for f in clip.frames if f.seq == seq), None) if clip else None
