"""One model as the detector runs it: weights, family, engine, scorer and window plan."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.registry import get_family
from models.scoring import FrameScores, ScorerConfig
from models.weights import load_calibration_arrays, read_meta
from stream.detector.config import DetectorConfig
from stream.detector.engine import Engine
from stream.detector.gate import gate_for
from stream.detector.precision import scorer_decisions
from stream.detector.reuse import FeatureStore

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Buffers:
    """One of a model's two sets of preallocated arrays: its networks are built over them
    and read them in place (zero-copy), so a batch fills them and the network reads them
    without a copy. A batch holds one set from scheduling to publishing
    (:meth:`ModelRuntime.lend`, :meth:`ModelRuntime.give_back`), so the next batch is
    filled while the network runs this one.
    """

    #: (max batch, window, *contract) windows the network reads.
    inputs: np.ndarray
    #: Encoder reuse: the frames a batch encodes (None without reuse)...
    fresh: np.ndarray | None
    #: ...and each one's predecessor, where the encoder reads it (None: it reads none).
    previous: np.ndarray | None
    #: Which of the engine's bound networks reads these (the runtime's business only).
    lane: int


class ModelRuntime:
    """A loaded model and how the detector schedules its windows.

    The model's family says how many frames a window holds, how many of its newest
    frames it can score and how many before those its scorer reads; that is checked
    before any network is built. Windows start every ``stride`` frames (the detector's
    stride, at most the frames the model can score), and each scores the frames after
    those already scored.

    Args:
        weights: Weights stem or ``.params`` path.
        config: The detector's config (device, precision, batch, stride).
        scorer: The scoring config (rule, threshold; ``auto``/null take the weights').
    """

    def __init__(self, weights: str | Path, config: DetectorConfig,
                 scorer: ScorerConfig) -> None:
        self.weights = str(weights)
        meta = read_meta(weights)
        family = get_family(meta.model)
        self.temporal = family.temporal(meta)      # refuses an unusable window, early
        self.window = self.temporal.window
        self.lookback = self.temporal.lookback
        self.stride = min(config.stride, self.temporal.scorable)
        if self.stride != config.stride:
            log.info("%s scores %d frame(s) per window: stride %d for it", weights,
                     self.temporal.scorable, self.stride)
        # The scorer first: precision auto keeps a reduced precision only if it decides
        # as fp32 does under this scorer.
        self.scorer = family.scorer(meta, load_calibration_arrays(weights, meta), scorer)
        try:
            family.check_rule(meta, self.scorer.rule)
        except ValueError as err:
            raise ValueError(f"{weights}: {err}") from None
        decode = self.stride + self.lookback
        self.engine = Engine(weights, config.device, config.precision, config.max_batch,
                             config.int8_calibration,
                             decode_last=decode if decode < self.window else None,
                             decide=scorer_decisions(self.scorer, self.lookback),
                             backend=config.backend,
                             # windows that share no frame have nothing to reuse
                             reuse=config.encoder_reuse and self.stride < self.window)
        self.contract = self.engine.contract
        #: Encoder reuse (None: each window runs the whole network).
        self.reuse = self.engine.reuse
        #: The motion gate (None: every window runs the network).
        self.gate = gate_for(config.gate, meta.calibration, self.window,
                             getattr(self.scorer, "smooth", 1), self.contract.pixel_scale,
                             self.weights)
        #: Frames a stream's ring holds: a window and two strides of slack.
        self.capacity = self.window + 2 * self.stride
        reuse = self.reuse
        self._free = [Buffers(inputs, None if reuse is None else reuse.fresh[lane],
                              None if reuse is None or reuse.previous is None
                              else reuse.previous[lane], lane)
                      for lane, inputs in enumerate(self.engine.batches)]

    def lend(self) -> Buffers:
        """A free set of buffers for a new batch (the first free one).

        Raises:
            RuntimeError: If both are held (a batch must be given back first).
        """
        if not self._free:
            raise RuntimeError(f"{self.weights}: both input buffers are held by batches; "
                               "give one back before scheduling another")
        buffers = min(self._free, key=lambda b: b.lane)
        self._free.remove(buffers)
        return buffers

    def give_back(self, buffers: Buffers) -> None:
        """Return a batch's buffers once it is published."""
        self._free.append(buffers)

    @property
    def max_batch(self) -> int:
        return len(self.engine.batch)

    @property
    def context(self) -> int:
        """Frames of a window the split network reads (the oldest): those a window
        encodes when they are new."""
        return self.reuse.context if self.reuse is not None else self.window

    def new_store(self) -> FeatureStore | None:
        """A new stream's store of encoder outputs (None without encoder reuse)."""
        return None if self.reuse is None else self.reuse.store(self.stride)

    @property
    def store_bytes(self) -> int:
        """Bytes of one stream's :meth:`new_store`."""
        return 0 if self.reuse is None else self.reuse.store_bytes(self.stride)

    def run(self, buffers: Buffers, fresh: Sequence[tuple[FeatureStore, int]],
            windows: Sequence[tuple[FeatureStore, int]], tail: bool) -> np.ndarray:
        """One batch's forward pass on its ``buffers``: with encoder reuse, encode the
        ``fresh`` frames (in ``buffers.fresh``) and run the temporal network on the cached
        ``windows``; else the whole network on the windows in ``buffers.inputs``. The
        output as :meth:`Engine.run`'s: a view valid until these buffers run again."""
        engine = self.engine
        if self.reuse is None:
            return engine.run(len(windows), tail=tail, slot=buffers.lane)
        started = time.perf_counter()
        out = self.reuse.run(fresh, windows, engine.decode_last if tail else engine.outputs,
                             buffers.lane)
        engine.busy_s += time.perf_counter() - started
        engine.frames_run += len(windows) * self.window
        return out

    def gated_scores(self, n: int) -> FrameScores:
        """The scores of ``n`` frames of a still window (no network ran): the rule value
        is the gate's calibrated still score, every other value 0, no pixel anomalous."""
        size = self.contract.size
        zeros = np.zeros(n, np.float32)
        plane = np.zeros((n, size, size), np.float32)
        return FrameScores(error=zeros, area=zeros.astype(np.int64), peak=zeros,
                           motion=zeros, relative=zeros, top=zeros,
                           score=np.full(n, self.gate.score), anomalous=np.zeros(n, bool),
                           map=plane, mask=plane.astype(bool), sums=plane)

    def first_scored(self, start: int, scored: int) -> int:
        """The first frame the window starting at ``start`` scores, when the frames before
        ``scored`` already are."""
        return max(scored, start + self.window - self.temporal.scorable)

    def needs_full(self, start: int, first: int) -> bool:
        """Whether the window must run the full network: the tail one does not output
        frame ``first - lookback``. (With one network there is no choice to make.)"""
        engine = self.engine
        return (engine.decode_last != engine.outputs
                and first - self.lookback - start < self.window - engine.decode_last)

    def describe(self) -> dict:
        """What ``status`` reports of this model."""
        return {"weights": self.weights, "model": self.engine.meta.model,
                "window": self.window, "stride": self.stride, "rule": self.scorer.rule,
                "threshold": self.scorer.threshold, "precision": self.engine.precision,
                "encoder_reuse": self.reuse is not None,
                "gate": None if self.gate is None else {"bound": self.gate.bound,
                                                        "score": self.gate.score}}
