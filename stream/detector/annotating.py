"""Annotate: the stage that draws a scored frame's overlay (red tint or heat map, boxes,
score) where someone subscribes to it, and what drawing one takes (also for an event's
peak snapshot and its clip)."""

from __future__ import annotations

from stream.detector.annotate import Annotator
from stream.detector.clips import ClipFrame
from stream.detector.items import ScoredFrame
from stream.detector.stages import Stage
from stream.wire.publisher import Publisher


def clip_frame(f: ScoredFrame) -> ClipFrame:
    """What drawing the frame's overlay takes (references only: nothing drawn yet)."""
    scorer = f.state.runtime.scorer
    # A probability needs its digits (0.97 / 0.4); pixel sums read fine at one decimal.
    fmt = getattr(scorer, "label_format", ".1f")
    label = f"{scorer.rule} {f.score:{fmt}} / {f.threshold:{fmt}}"
    mask = f.mask if f.anomalous else None
    # Scorers whose map is a heat map (a classifier's activation map) draw it in colour.
    heat = f.scores.map[f.j] if f.anomalous and getattr(scorer, "heat", False) else None
    return ClipFrame(f.seq, f.ts, f.src, mask, f.boxes, label, f.anomalous, heat)


def draw(annotator: Annotator, f: ScoredFrame) -> bytes:
    """The frame's overlay as a JPEG."""
    c = clip_frame(f)
    return annotator.encode(annotator.draw(c.source, c.mask, c.boxes, c.label, c.anomalous,
                                           heat=c.heat))


class Annotating(Stage):
    """Draws the overlay of every frame whose ``overlay.<stream>`` someone subscribes to
    (reusing one already drawn for a snapshot) and marks it for publishing; no one
    subscribing, nothing is drawn.

    Args:
        publisher: Whose subscriptions say which overlays are wanted.
        annotator: How overlays are drawn.
    """

    def __init__(self, publisher: Publisher, annotator: Annotator) -> None:
        self.publisher = publisher
        self.annotator = annotator

    def process(self, f: ScoredFrame) -> None:
        if self.publisher.wants(f"overlay.{f.state.stream}"):
            if f.jpeg is None:
                f.jpeg = draw(self.annotator, f)
            f.overlay = True
