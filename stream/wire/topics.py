"""The detector's topic messages, typed: one frozen dataclass per topic, and one decoder.

Every topic message is ``[topic, JSON]``; ``overlay.<stream>`` adds the JPEG as a third
part. The JSON is an object that starts with ``"v": 1`` and then holds each class's
fields in the order they are declared, so ``to_json()`` writes byte for byte what the
detector published before these classes existed, plus the version.

Reading (:func:`decode_topic`, or ``from_dict``) is lenient where a newer detector may
add something and strict where the meaning could change:

- unknown keys are ignored;
- a ``v`` other than 1 is refused; a message without ``v`` is read as version 1 (the
  detectors before the version field published exactly these fields);
- a missing field, a wrong type, an unknown topic or JSON that does not parse raise
  :class:`TopicError`, naming the topic and the field.

Fields written as ``null`` when unknown: ``clip`` and ``frame`` (only replayed datasets
have them), an alert's ``end_seq`` and ``end_ts`` (until its ``end``). Fields left out
unless set: an alert's ``recovered`` and ``clip_path``; ``status``'s ``subscriptions``,
``inference_s``, ``precision`` and ``inference``, and a stream's ``drift``. A stream that
the detector ended for idleness is reported in ``status`` as an :class:`IdleStream`
(``online``, ``last_seen``, ``idle_ended``) instead of a :class:`StreamStatus`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from stream.wire.protocol import STREAM_ID
from stream.wire.records import Record, RecordError, optional, short

#: The version every topic message carries as ``"v"``.
VERSION = 1
#: Kinds of alert message.
ALERT_TYPES = ("start", "update", "end")
_JPEG_START = b"\xff\xd8"


class TopicError(RecordError):
    """A topic message that cannot be read; the message names the topic and the field."""


class TopicMessage(Record):
    """What every topic message has: its topic, its ``"v": 1`` dict form, its parts."""

    #: The topic's first word (``score``, ``overlay``, ``alert``, ``eos``, ``status``).
    KIND = ""

    @property
    def topic(self) -> str:
        """The topic it is published on: ``<kind>.<stream>``."""
        return f"{self.KIND}.{self.stream}"

    def to_dict(self) -> dict:
        """``{"v": 1, **fields}``: the JSON object as published."""
        return {"v": VERSION, **super().to_dict()}

    @property
    def payload(self) -> dict:
        """The JSON object as published (:meth:`to_dict`), for readers that want a dict."""
        return self.to_dict()

    def to_json(self) -> str:
        """The JSON text, exactly as ``json.dumps`` writes :meth:`to_dict`."""
        return json.dumps(self.to_dict())

    def to_parts(self) -> list[bytes]:
        """The message's parts for ``send_multipart``: ``[topic, JSON]``."""
        return [self.topic.encode(), self.to_json().encode()]

    @classmethod
    def from_dict(cls, data: object, *, topic: str | None = None, **parts):
        """Read a message from its JSON object: the version first, then every field;
        unknown keys are ignored.

        Args:
            data: The parsed JSON object.
            topic: The topic it came on, for error messages (default: the kind).
            **parts: Fields that travel outside the JSON (an overlay's ``jpeg``).

        Raises:
            TopicError: On a version other than 1, a missing field or a wrong type.
        """
        where = topic or cls.KIND
        if isinstance(data, dict) and "v" in data:
            v = data["v"]
            if type(v) is not int or v != VERSION:
                raise TopicError(f"{where}: message version {short(v)} is not {VERSION}, the "
                                 "one this vadstream reads; a newer detector needs a newer "
                                 "vadstream")
        try:
            return super().from_dict(data, where=where, **parts)
        except RecordError as err:
            raise TopicError(str(err)) from None


@dataclass(frozen=True)
class Scores(Record):
    """A frame's value under every rule, and its score under the frame rule.

    Args:
        error: Mean absolute reconstruction error (0-255 scale).
        area: Anomalous pixels at model resolution.
        peak: Largest excess of the 4x4 error sum over its baseline.
        motion: Mean of the top 1% of the error's change from the frame before.
        score: The value under the detector's rule (one of these).
        relative: Mean of the top 1% of the error map normalised by normal footage's
            mean and spread at each pixel (None: the weights carry no spread map).
        top: Mean of the top 1% of the 4x4 error sums less their baseline (None: from a
            detector before this field).
    """

    error: float
    area: int
    peak: float
    motion: float
    score: float
    relative: float | None = optional()
    top: float | None = optional()


@dataclass(frozen=True, kw_only=True)
class FrameMessage(TopicMessage):
    """The frame a per-frame message is about (its fields come first in the JSON).

    Args:
        stream: Stream id.
        seq: The frame's capture sequence number.
        ts: Its capture time (Unix seconds).
        clip: Replayed datasets: the clip it comes from (else None).
        frame: Replayed datasets: its 1-based index in the clip (else None).
    """

    stream: str
    seq: int
    ts: float
    clip: str | None = None
    frame: int | None = None


@dataclass(frozen=True, kw_only=True)
class ScoreMessage(FrameMessage):
    """``score.<stream>``: every scored frame (after :class:`FrameMessage`'s fields).

    Args:
        scores: Its value under every rule.
        threshold: The frame rule's threshold.
        rule: The frame rule.
        anomalous: Whether the score reached the threshold.
        latency_ms: Capture to publish time.
        gated: Scored without the network: its window was still (the detector's motion
            gate); ``scores.score`` is the calibrated still score, the other rule values 0
            (left out while false).
    """

    KIND = "score"
    scores: Scores
    threshold: float
    rule: str
    anomalous: bool
    latency_ms: float
    gated: bool = optional(False)


@dataclass(frozen=True, kw_only=True)
class OverlayMessage(FrameMessage):
    """``overlay.<stream>``: the annotated frame (a JSON header, then the JPEG), after
    :class:`FrameMessage`'s fields.

    Args:
        anomalous: Whether it is anomalous.
        score: Its score under the frame rule.
        boxes: ``[[x, y, w, h], ...]`` anomalous regions in source pixels.
        jpeg: The annotated frame at source resolution (the third part, not in the JSON).
    """

    KIND = "overlay"
    anomalous: bool
    score: float
    boxes: list[list[int]]
    jpeg: bytes = field(repr=False, metadata={"part": True})

    def to_parts(self) -> list[bytes]:
        """``[topic, JSON header, JPEG]``."""
        return [*super().to_parts(), self.jpeg]


@dataclass(frozen=True, kw_only=True)
class AlertMessage(TopicMessage):
    """``alert.<stream>``: an event's ``start``, ``update`` or ``end``.

    Args:
        type: ``start``, ``update`` or ``end``.
        id: The event's id (hex), the same in all its alerts.
        stream: Stream id.
        start_seq: The event's first anomalous frame.
        start_ts: Its capture time.
        end_seq: The event's last anomalous frame (None until ``end``).
        end_ts: Its capture time (None until ``end``).
        seq: The frame that raised this alert.
        ts: Its capture time.
        score: That frame's score.
        peak_score: The highest score of the event so far.
        peak_seq: Its frame.
        threshold: The frame rule's threshold.
        frames: Anomalous frames in the event so far.
        boxes: ``[[x, y, w, h], ...]`` in source pixels (at ``end``: the peak frame's).
        clip: Replayed datasets: the clip of ``seq`` (else None).
        frame: Replayed datasets: the 1-based index of ``seq`` in its clip (else None).
        recovered: An ``end`` written at start-up for an event that a detector killed
            mid-event left open (left out of the JSON unless true).
        clip_path: At ``end``: the event's MP4 clip (it appears the clips' ``post_s``
            seconds later); left out of the JSON when there is none.
    """

    KIND = "alert"
    type: str
    id: str
    stream: str
    start_seq: int
    start_ts: float
    end_seq: int | None = None
    end_ts: float | None = None
    seq: int
    ts: float
    score: float
    peak_score: float
    peak_seq: int
    threshold: float
    frames: int
    boxes: list[list[int]]
    clip: str | None = None
    frame: int | None = None
    recovered: bool = optional(False)
    clip_path: str | None = optional()

    @classmethod
    def from_dict(cls, data: object, *, topic: str | None = None, **parts) -> AlertMessage:
        alert = super().from_dict(data, topic=topic, **parts)
        if alert.type not in ALERT_TYPES:
            raise TopicError(f"{topic or cls.KIND}: alert type {alert.type!r} is not one of "
                             f"{', '.join(ALERT_TYPES)}")
        return alert


@dataclass(frozen=True, kw_only=True)
class EosMessage(TopicMessage):
    """``eos.<stream>``: the stream ended; its counters.

    Args:
        stream: Stream id.
        received: Frames received.
        scored: Frames scored.
        dropped: Frames lost before the detector (sequence gaps).
        overrun: Frames received but skipped by an overloaded detector.
        unscored: Frames too few at the end to fill a window.
    """

    KIND = "eos"
    stream: str
    received: int
    scored: int
    dropped: int
    overrun: int
    unscored: int


@dataclass(frozen=True, kw_only=True)
class DriftStatus(Record):
    """A stream's scores against its model's calibration (:mod:`stream.detector.drift`).

    Args:
        state: ``filling`` (fewer than ``window`` frames scored yet), ``ok`` or ``drift``.
        figure: The median of the last ``window`` frames' rule values (a frame judged
            anomalous counts as the threshold it was judged against); None while filling.
        limit: The figure at and above which the stream has drifted (the calibration's
            percentile of normal frames, or the threshold fallback).
        clear: The figure below which drift clears.
        frames: Frames in the window.
        window: Frames the figure is the median of.
        since: Capture time of the frame that turned drift on (None unless drifted).
        reference: Where ``limit`` comes from: ``calibration p90`` (or another
            percentile) or ``threshold fallback``.
    """

    state: str
    figure: float | None
    limit: float
    clear: float
    frames: int
    window: int
    since: float | None = None
    reference: str


@dataclass(frozen=True, kw_only=True)
class StreamStatus(Record):
    """One tracked stream in ``status``.

    Args:
        received: Frames received (this stream session).
        scored: Frames scored.
        dropped: Frames lost before the detector.
        overrun: Frames skipped by an overloaded detector.
        fps: Frames/s received since the last status.
        queue: Frames received and not yet scored.
        event_open: Whether an event is open.
        events: Events opened.
        reconnects: Reconnections of its capture to a live source.
        online: Whether frames arrived lately.
        clip: The clip being replayed (None for live sources).
        model: The weights it is scored with.
        threshold: The threshold its frames are decided against (its override, or its
            model's calibrated one).
        detect: False while its detection is switched off.
        paused: Frames dropped unscored while detection was off.
        masked: Whether an ignore mask applies.
        drift: Its scores against its model's calibration (left out before its first
            scored frame and when drift tracking is off).
    """

    received: int
    scored: int
    dropped: int
    overrun: int
    fps: float
    queue: int
    event_open: bool
    events: int
    reconnects: int
    online: bool
    clip: str | None = None
    model: str | None = optional()
    threshold: float | None = optional()
    detect: bool = optional(True)
    paused: int = optional(0)
    masked: bool = optional(False)
    drift: DriftStatus | None = optional()


@dataclass(frozen=True, kw_only=True)
class ModelStatus(Record):
    """One model the detector runs (each weights file is loaded once).

    Args:
        weights: Its weights file.
        model: Its family's registered name.
        window: Frames per window.
        stride: Frames between a stream's windows.
        rule: Its frame rule.
        threshold: That rule's threshold.
        precision: The precision it runs at.
        encoder_reuse: Whether it encodes each frame once (its family splits its network;
            ``stream.detector.reuse``); None from a detector that does not say.
    """

    weights: str
    model: str
    window: int
    stride: int
    rule: str
    threshold: float
    precision: str
    encoder_reuse: bool | None = optional()


@dataclass(frozen=True, kw_only=True)
class IdleStream(Record):
    """A stream the detector ended for idleness, still reported (a camera that is down).

    Args:
        online: Always false.
        last_seen: Unix time of its last frame.
        idle_ended: Always true: what tells this entry from a :class:`StreamStatus`.
    """

    MARK = "idle_ended"
    online: bool
    last_seen: float
    idle_ended: bool


@dataclass(frozen=True, kw_only=True)
class InferenceTimes(Record):
    """A cumulative histogram of forward-pass times (seconds), since the detector started.

    Args:
        bounds: Upper bounds of the buckets (a last +Inf bucket is implied).
        counts: Passes at or below each bound (cumulative).
        sum: Seconds of all passes.
        count: Passes.
    """

    bounds: list[float]
    counts: list[int]
    sum: float
    count: int


@dataclass(frozen=True, kw_only=True)
class InferenceTotals(Record):
    """Time the detector has spent in the network.

    Args:
        seconds: Seconds in forward passes.
        frames: Frames they reconstructed.
    """

    seconds: float
    frames: int


@dataclass(frozen=True, kw_only=True)
class StatusMessage(TopicMessage):
    """``status``: the detector's state, once per status interval.

    Args:
        ts: Unix time of the message.
        uptime_s: Seconds since the detector started.
        streams: Every tracked stream, and those ended for idleness, by id.
        rejected: Frame messages refused, by reason.
        subscriptions: Topic prefixes someone subscribes to.
        rule: The frame rule.
        threshold: Its threshold.
        status_interval: Seconds between status messages.
        inference_s: The histogram of forward-pass times.
        precision: The model's precision (``fp32``, ``bf16``, ``int8``).
        inference: Seconds spent in the network and frames reconstructed.
        models: Every model the detector runs.
    """

    KIND = "status"
    ts: float
    uptime_s: float
    streams: dict[str, StreamStatus | IdleStream]
    rejected: dict[str, int]
    subscriptions: list[str] | None = optional()
    rule: str
    threshold: float
    status_interval: float
    inference_s: InferenceTimes | None = optional()
    precision: str | None = optional()
    inference: InferenceTotals | None = optional()
    models: list[ModelStatus] | None = optional()

    @property
    def topic(self) -> str:
        return "status"


#: The message class of each topic kind.
KINDS: dict[str, type[TopicMessage]] = {cls.KIND: cls for cls in (
    ScoreMessage, OverlayMessage, AlertMessage, EosMessage, StatusMessage)}
_NAMES = "alert.<stream>, score.<stream>, overlay.<stream>, eos.<stream> or status"


def _bytes(part) -> bytes:
    return part if isinstance(part, bytes) else bytes(part)   # zmq.Frame, memoryview


def decode_topic(parts: Sequence) -> TopicMessage:
    """Read one published message (``recv_multipart``'s parts: bytes or ``zmq.Frame``).

    Args:
        parts: ``[topic, JSON]``, or ``[topic, JSON header, JPEG]`` for an overlay.

    Returns:
        The message, typed by its topic.

    Raises:
        TopicError: On an unknown topic, a wrong number of parts, JSON that does not
            parse, a version other than 1, a missing or wrong-typed field, a payload
            whose stream is not the topic's, or an overlay whose third part is no JPEG.
    """
    if not parts:
        raise TopicError("an empty message: expected [topic, JSON]")
    try:
        topic = _bytes(parts[0]).decode()
    except UnicodeDecodeError:
        raise TopicError(f"topic {_bytes(parts[0])[:40]!r} is not UTF-8") from None
    kind, dot, stream = topic.partition(".")
    cls = KINDS.get(kind)
    if cls is None or (cls is StatusMessage) == bool(dot):
        raise TopicError(f"unknown topic {topic[:64]!r}: expected {_NAMES}")
    if dot and not STREAM_ID.fullmatch(stream):
        raise TopicError(f"topic {topic[:64]!r}: stream id {stream[:64]!r} is invalid (1-64 "
                         "letters, digits, '_' or '-')")
    want = 3 if cls is OverlayMessage else 2
    if len(parts) != want:
        shape = "[topic, JSON header, JPEG]" if want == 3 else "[topic, JSON]"
        raise TopicError(f"{topic}: expected {want} parts {shape}, got {len(parts)}")
    try:
        data = json.loads(_bytes(parts[1]))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise TopicError(f"{topic}: the payload is not JSON ({err})") from None
    extra = {}
    if cls is OverlayMessage:
        extra["jpeg"] = _bytes(parts[2])
        if not extra["jpeg"].startswith(_JPEG_START):
            raise TopicError(f"{topic}: the third part is not a JPEG")
    message = cls.from_dict(data, topic=topic, **extra)
    if dot and message.stream != stream:
        raise TopicError(f"{topic}: the payload's stream {message.stream!r} is not the "
                         f"topic's {stream!r}")
    return message
