"""What travels through the detector's stages (:mod:`stream.detector.loop`), in one queue:
frames taken in (:class:`Received`), cuts and stream ends (:class:`Cut`,
:class:`StreamEnd`), batches of windows (:class:`Batch`) and status ticks (:class:`Tick`).

Only the last stage, :class:`stream.detector.publish.Publishing`, sends topics: the stages
before it put the messages they make (alerts, status) on the items (``messages`` of a
:class:`ScoredFrame`, :class:`StreamEnd` or :class:`Tick`); a frame's score and overlay it
makes from the frame itself.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from models.scoring import FrameScores
from stream.detector.reuse import FeatureStore
from stream.detector.runtime import Buffers, ModelRuntime
from stream.detector.state import StreamState
from stream.wire.protocol import Frame
from stream.wire.topics import TopicMessage


@dataclass
class Received:
    """A frame of an admitted stream, for the ring stage."""

    state: StreamState
    frame: Frame


@dataclass
class Cut:
    """A stream's frames so far end a segment: its source ended or restarted, another clip
    began, its detection went off, its model changed, it was ended over control or for
    idleness. What it sent is scheduled (before any later frame of it is taken in), and
    its event is closed once those frames are emitted (:class:`StreamEnd`).

    Attributes:
        state: The stream.
        eos: The stream ends: it is no longer tracked from the cut on (its next frame
            starts it afresh), and its ``eos`` is published once its frames are; else it
            stays tracked and only its segment ends.
    """

    state: StreamState
    eos: bool


@dataclass
class StreamEnd:
    """A cut stream scored to its end: its event is closed, and with ``eos`` its end
    reported. It follows the batch that holds the stream's last windows through the
    stages (each stage's ``on_stream_end``), or goes at once when none does."""

    state: StreamState
    eos: bool
    unscored: int          # frames of it that no window scored (fewer than a window)
    messages: list[TopicMessage] = field(default_factory=list)

    @property
    def stream(self) -> str:
        return self.state.stream


@dataclass
class Tick:
    """The loop's periodic turn (status, housekeeping); also the first, at start, that
    carries the end alerts of events a killed detector left open."""

    messages: list[TopicMessage] = field(default_factory=list)


@dataclass
class Window:
    """One window of a batch, and what its scored frames need afterwards."""

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
    row: int | None = 0  # its row in the batch's inputs and output (None: gated, still)


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
    boxes: list = field(default_factory=list)   # its anomalous regions, source pixels
    jpeg: bytes | None = None   # its overlay, where one was drawn (a snapshot, a subscriber)
    overlay: bool = False       # its overlay is published (someone subscribes to it)
    #: The alerts it raised (stored already), published before its score and overlay.
    messages: list[TopicMessage] = field(default_factory=list)


@dataclass(eq=False)
class Batch:
    """One forward pass: windows of one model, in input buffers the batch holds from
    scheduling until it is published (:meth:`ModelRuntime.lend`), so the network reads
    them in place; its output stays valid until then too.

    Attributes:
        runtime: The model.
        buffers: Its input buffers (``inputs``; with encoder reuse ``fresh``/``previous``).
        tail: Whether the tail network runs (each window's newest frames only).
        windows: Its windows, in the order of the rows they fill.
        fresh: Encoder reuse: the frames it encodes, in the order they were copied into
            ``buffers.fresh``: their stream's store and key.
        output: The network's output, once it ran (None: every window gated).
        frames: Its scored frames (the scoring stage's).
        ends: Streams whose end waits on this batch (none of their later frames may
            join it), emitted after its frames.
    """

    runtime: ModelRuntime
    buffers: Buffers
    tail: bool = True
    windows: list[Window] = field(default_factory=list)
    fresh: list[tuple[FeatureStore, int]] = field(default_factory=list)
    output: np.ndarray | None = None
    error: BaseException | None = None
    seconds: float = 0.0
    done: threading.Event = field(default_factory=threading.Event)
    frames: list[ScoredFrame] = field(default_factory=list)
    ends: list[StreamEnd] = field(default_factory=list)

    @property
    def inputs(self) -> np.ndarray:
        """(max batch, window, ...) the windows, row by row, as the network reads them."""
        return self.buffers.inputs

    @property
    def rows(self) -> int:
        """Windows the network runs on (the others are gated: still)."""
        return sum(w.row is not None for w in self.windows)

    def run(self) -> np.ndarray | None:
        """The forward pass (on the inference thread); None when every window is gated."""
        if not self.rows:
            return None
        return self.runtime.run(self.buffers, self.fresh,
                                [(w.state.features, w.key) for w in self.windows
                                 if w.row is not None], self.tail)
