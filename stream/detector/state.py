"""What the detector keeps for one stream."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np

from models.scoring import Smoother
from stream.detector.drift import DriftTracker
from stream.detector.events import EventTracker
from stream.detector.ring import RingBuffer
from stream.detector.runtime import ModelRuntime
from stream.detector.settings import StreamSettings
from stream.detector.snapshots import PeakFrame

#: Per-stream counters, as the ``eos`` message reports them.
COUNTS = ("received", "scored", "dropped", "overrun", "unscored")


class StreamState:
    """One stream: its model, ring of frames, window position, events and counters.

    Frames are addressed by their absolute index in the ring; ``next_start`` is the
    first frame of the next window, ``scored`` the first frame not yet handed to the
    network for scoring.
    """

    def __init__(self, stream: str, shape: tuple[int, ...], runtime: ModelRuntime,
                 tracker: EventTracker, settings: StreamSettings | None = None) -> None:
        self.stream = stream
        #: Live settings (threshold, detection, mask), shared with the detector's by id.
        self.settings = settings or StreamSettings()
        self.shape = shape
        self.runtime = runtime
        contract = runtime.contract
        self.ring = RingBuffer(runtime.capacity, {
            "x": (contract.shape, np.float32), "src": (shape, np.uint8),
            "seq": ((), np.int64), "ts": ((), np.float64), "frame": ((), np.int64)})
        self.tracker = tracker
        self.peak = PeakFrame()
        self.capture_reconnects = 0   # the count the capture reported last
        self.clip: str | None = None
        self.next_start = 0
        self.scored = 0
        self.last_seq = -1
        self.counts = Counter()
        self.last_seen = time.monotonic()
        self.rate_mark = (self.last_seen, 0)  # (time, frames received) at the last status
        self.online = True
        self.smoother = Smoother(runtime.scorer.smooth)
        #: Stretches of frames between cuts: a window carries the one its frames are from.
        self.segment = 0
        #: Encoder outputs of its frames (encoder reuse; None: none), owned by the
        #: inference thread, by frame key ``base`` + ring index: ``base`` counts the frames
        #: of earlier segments, so a key is never reused while a batch may read it.
        self.features = runtime.new_store()
        self.base = 0
        #: Frames before this ring index are encoded (or handed to a batch to encode).
        self.encoded = 0
        self._smoothed_segment = 0   # the segment the smoother holds values of
        #: Its scores against its model's calibration (None: before its first scored
        #: frame, or drift tracking is off); kept across clips and cuts.
        self.drift: DriftTracker | None = None

    @property
    def threshold(self) -> float:
        """The threshold its frames are decided against: its override, or its model's."""
        override = self.settings.threshold
        return self.runtime.scorer.threshold if override is None else override

    def ignore(self):
        """Its ignore mask at model resolution (None: none)."""
        return self.settings.ignore(self.shape, self.runtime.contract.size)

    @property
    def received(self) -> int:
        """Frames taken in since the stream started."""
        return self.counts["received"]

    @property
    def nbytes(self) -> int:
        return self.ring.nbytes + (self.features.nbytes if self.features is not None else 0)

    @property
    def ready(self) -> int:
        """Windows whose frames have all arrived and that are not scheduled yet."""
        runtime, ring = self.runtime, self.ring
        if ring.count < self.next_start + runtime.window:
            return 0
        return (ring.count - self.next_start - runtime.window) // runtime.stride + 1

    @property
    def full(self) -> bool:
        """Whether the ring holds as many unscheduled frames as it can."""
        return self.ring.count - self.next_start >= self.ring.capacity

    def smooth(self, segment: int, value: float) -> float:
        """A scored frame's rule value through the stream's smoother, which starts afresh
        with each segment (a cut: another clip, a restarted capture, an end of stream).
        Scored frames come in order, and a cut's leftover windows are scored before the
        next segment's, so this sees each segment whole, as offline scoring sees a clip."""
        if segment != self._smoothed_segment:
            self.smoother.reset()
            self._smoothed_segment = segment
        return self.smoother.push(value)

    def reset(self) -> None:
        """Forget the frames (a new clip starts, a new segment); events and counters
        stay."""
        self.segment += 1
        self.base += self.ring.count
        self.ring.clear()
        self.next_start = self.scored = self.encoded = 0
