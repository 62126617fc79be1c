"""The overlay of an event's peak frame, kept so the events store can hold its snapshot."""

from __future__ import annotations


class PeakFrame:
    """The highest-scoring frame of a stream's current anomalous run or open event.

    It follows :class:`stream.detector.events.EventTracker`'s choice of peak exactly (the first
    frame with the highest score, over the run that opened the event and every
    anomalous frame after), so the frame kept is the one an alert's ``peak_seq`` names.
    """

    def __init__(self) -> None:
        self.score: float | None = None
        self.seq: int | None = None
        self.jpeg: bytes | None = None
        self._stored: tuple[str, int] | None = None   # (event id, seq) last handed out

    def wants(self, anomalous: bool, score: float, event_open: bool) -> bool:
        """Whether this frame becomes the peak (its overlay must then be kept).

        Call once per scored frame, before the tracker sees it: a normal frame with no
        event open ends the run, and with it the candidate.
        """
        if not anomalous:
            if not event_open:
                self.reset()
            return False
        return self.score is None or score > self.score

    def keep(self, score: float, seq: int, jpeg: bytes) -> None:
        """Make this frame the peak."""
        self.score, self.seq, self.jpeg = score, seq, jpeg

    def for_alert(self, alert: dict) -> bytes | None:
        """The peak's JPEG if ``alert`` names it as its peak and it was not handed out for
        this event yet; None otherwise."""
        key = (alert["id"], alert.get("peak_seq"))
        if self.jpeg is None or alert.get("peak_seq") != self.seq or key == self._stored:
            return None
        self._stored = key
        return self.jpeg

    def reset(self) -> None:
        """Forget the candidate (the event ended, or the run was broken)."""
        self.score = self.seq = self.jpeg = None
