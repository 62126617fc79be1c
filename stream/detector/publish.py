"""Publish: the last stage, and the only one that sends topics. It sends what the stages
before put on each item (alerts already stored, status), each scored frame's score and
its overlay where one is wanted, and each ended stream's ``eos``."""

from __future__ import annotations

import logging
import time

import numpy as np

from stream.detector.items import ScoredFrame, StreamEnd, Tick
from stream.detector.stages import Stage
from stream.detector.state import COUNTS
from stream.wire.publisher import Publisher
from stream.wire.topics import EosMessage, OverlayMessage, ScoreMessage, Scores, TopicMessage

log = logging.getLogger(__name__)


def _finite_or_none(value: float) -> float | None:
    """A value for an optional score field: None where it does not exist (NaN) or a
    network output went wrong (inf), never a JSON ``NaN``."""
    return float(value) if np.isfinite(value) else None


def score_message(f: ScoredFrame) -> ScoreMessage:
    """A scored frame's ``score.<stream>`` message (its latency measured now)."""
    s, j, scorer = f.scores, f.j, f.state.runtime.scorer
    return ScoreMessage(
        stream=f.state.stream, seq=f.seq, ts=f.ts, clip=f.clip, frame=f.frame,
        scores=Scores(error=float(s.error[j]), area=int(s.area[j]), peak=float(s.peak[j]),
                      motion=float(s.motion[j]), score=f.score,
                      relative=_finite_or_none(s.relative[j]), top=_finite_or_none(s.top[j])),
        threshold=f.threshold, rule=scorer.rule, anomalous=f.anomalous,
        latency_ms=round((time.time() - f.ts) * 1000, 2), gated=f.gated)


def overlay_message(f: ScoredFrame) -> OverlayMessage:
    """A scored frame's ``overlay.<stream>`` message (its overlay drawn already)."""
    return OverlayMessage(stream=f.state.stream, seq=f.seq, ts=f.ts, clip=f.clip,
                          frame=f.frame, anomalous=f.anomalous, score=f.score,
                          boxes=f.boxes, jpeg=f.jpeg)


class Publishing(Stage):
    """Sends every topic, in the order the items came: per scored frame its alerts, its
    score and its overlay (where :class:`stream.detector.annotating.Annotating` drew one
    for a subscriber); a tick's messages (status); a stream end's alert and ``eos``.

    Args:
        publisher: The PUB socket's publisher.
    """

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher

    def process(self, item: ScoredFrame | Tick) -> None:
        self._send_all(item.messages)
        if isinstance(item, ScoredFrame):
            self._send(score_message(item))
            if item.overlay:
                self._send(overlay_message(item))

    def on_stream_end(self, end: StreamEnd) -> None:
        self._send_all(end.messages)
        if end.eos:
            state = end.state
            self._send(EosMessage(stream=state.stream, **{k: state.counts[k] for k in COUNTS}))
            log.info("stream %s ended: %s", state.stream, dict(state.counts))

    def _send_all(self, messages: list[TopicMessage]) -> None:
        for message in messages:
            self._send(message)

    def _send(self, message: TopicMessage) -> None:
        self.publisher.socket.send_multipart(message.to_parts(), copy=False)
