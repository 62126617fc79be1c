"""One model as the detector runs it: weights, family, engine, scorer and window plan."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
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

    def run(self, fresh: Sequence[tuple[FeatureStore, int]],
            windows: Sequence[tuple[FeatureStore, int]], tail: bool, slot: int
            ) -> np.ndarray:
        """One job's forward pass: with encoder reuse, encode the ``fresh`` frames and
        run the temporal network on the cached ``windows``; else the whole network on
        the windows in ``engine.batches[slot]``. The output as :meth:`Engine.run`'s."""
        engine = self.engine
        if self.reuse is None:
            return engine.run(len(windows), tail=tail, slot=slot)
        started = time.perf_counter()
        out = self.reuse.run(fresh, windows, engine.decode_last if tail else engine.outputs,
                             slot)
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
