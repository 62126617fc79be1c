"""Drift: a camera's normal scores moving away from what its model's calibration saw.

A lamp that is switched on, a season, a camera knocked askew: the scene is still normal,
but every frame now scores higher than the footage the threshold was calibrated on. Before
it rises above the threshold (and floods the operator with false alarms) the bulk of the
scores moves up. Per stream, :class:`DriftTracker` keeps the rule values of the last
``window`` scored frames and compares their median with the calibration's own percentiles
of normal frames:

- the **figure** is the median of the window's values, where a frame judged anomalous
  counts as the threshold it was judged against (its value is at least that): a short event
  moves the median by at most its share of the window, and a shift that pushes every frame
  over the threshold is still seen (tracking only the frames judged normal would leave
  nothing to track then);
- it **turns on** when the window is full and the figure reaches the *limit*, the
  calibration's ``percentile`` (90th by default) of its normal frames' values: more than
  half of the last ``window`` frames score where only a tenth of calibration's did;
- it **clears** when the figure falls below ``limit - release * (limit - median)``, the
  calibration's median being where a steady scene sits: halfway back by default, so a figure
  that hovers at the limit does not flap.

The calibration records the 50th, 90th and 99th percentiles of every rule's values on its
normal frames (``calibration.percentiles``, :func:`train.calibrate.calibrate`). Weights
without them (image families, classifiers, older weights) fall back on the threshold:
``limit = fallback * threshold`` and a median of 0 (the scale's origin); the status says
which reference applies (``reference``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

#: The percentiles a calibration records (``calibration.percentiles[rule]``).
PERCENTILES = (50, 90, 99)
#: Drift states: too few frames yet, steady, drifted.
STATES = ("filling", "ok", "drift")


@dataclass(frozen=True)
class DriftConfig:
    """``detector.drift`` in ``configs/pipeline.yaml``: when a stream's scores have drifted.

    Args:
        enabled: Track drift at all.
        window: Scored frames whose median is the figure (600: a minute at 10 frames/s);
            drift turns on at the earliest about half a window after scores shift.
        percentile: The calibration percentile of normal frames the figure is compared
            with (50, 90 or 99: those a calibration records).
        release: How far back towards the calibration's median the figure must fall to
            clear (0: just below the limit; 1: down to the median).
        fallback: For weights whose calibration records no percentiles: the limit as a
            share of the model's threshold.
    """

    enabled: bool = True
    window: int = 600
    percentile: int = 90
    release: float = 0.5
    fallback: float = 0.8

    def __post_init__(self) -> None:
        if self.window < 2:
            raise ValueError(f"drift.window must be at least 2 frames, got {self.window}")
        if self.percentile not in PERCENTILES:
            raise ValueError(f"drift.percentile must be one of {list(PERCENTILES)} (those a "
                             f"calibration records), got {self.percentile}")
        if not 0 <= self.release <= 1:
            raise ValueError(f"drift.release must be within 0..1, got {self.release}")
        if not 0 < self.fallback < 1:
            raise ValueError(f"drift.fallback must be within 0..1 (a share of the "
                             f"threshold), got {self.fallback}")


@dataclass(frozen=True)
class DriftReference:
    """What a model's calibration saw: the limit, the median and where they come from.

    Args:
        limit: The figure at and above which the scores have drifted.
        median: The calibration's median of normal values (0 on the fallback).
        threshold: The model's threshold (the fallback's base).
        source: ``calibration p90`` (or another percentile) or ``threshold fallback``.
    """

    limit: float
    median: float
    threshold: float
    source: str

    @classmethod
    def of(cls, calibration: Mapping, rule: str, threshold: float,
           config: DriftConfig) -> DriftReference:
        """The reference of a model's calibration metadata for its frame rule.

        Args:
            calibration: The weights' ``calibration`` metadata.
            rule: The frame rule the stream is scored by.
            threshold: That rule's calibrated threshold.
            config: The drift settings.
        """
        levels = (calibration.get("percentiles") or {}).get(rule) or {}
        limit, median = levels.get(str(config.percentile)), levels.get("50")
        if isinstance(limit, (int, float)) and isinstance(median, (int, float)) \
                and median <= limit <= threshold:
            return cls(float(limit), float(median), threshold,
                       f"calibration p{config.percentile}")
        return cls(config.fallback * threshold, 0.0, threshold, "threshold fallback")


class DriftTracker:
    """One stream's drift: the rolling median of its frames' values against a reference.

    Args:
        reference: What the model's calibration saw.
        config: The window, the release.
    """

    def __init__(self, reference: DriftReference, config: DriftConfig) -> None:
        self.reference = reference
        self.config = config
        self._values = np.empty(config.window, np.float64)
        self._count = 0
        #: Whether the stream has drifted.
        self.drifted = False
        #: Capture time of the frame that turned drift on (None: not drifted).
        self.since: float | None = None
        #: The median of the window (None until it is full).
        self.figure: float | None = None

    @property
    def clear(self) -> float:
        """The figure below which drift clears."""
        ref = self.reference
        return ref.limit - self.config.release * (ref.limit - ref.median)

    @property
    def frames(self) -> int:
        """Frames in the window."""
        return min(self._count, self.config.window)

    def push(self, value: float, threshold: float, ts: float) -> bool | None:
        """Take one scored frame's rule value.

        Args:
            value: Its (smoothed) rule value; a value that is not finite is left out.
            threshold: The threshold it was judged against: a frame at or above it (judged
                anomalous) counts as it.
            ts: Its capture time.

        Returns:
            True when drift turns on with this frame, False when it clears, else None.
        """
        if not np.isfinite(value):
            return None
        value = min(value, threshold)
        self._values[self._count % self.config.window] = value
        self._count += 1
        if self._count < self.config.window:
            return None
        self.figure = float(np.median(self._values))
        if not self.drifted and self.figure >= self.reference.limit:
            self.drifted, self.since = True, ts
            return True
        if self.drifted and self.figure < self.clear:
            self.drifted, self.since = False, None
            return False
        return None

    @property
    def state(self) -> str:
        """``filling`` (fewer than a window of frames yet), ``ok`` or ``drift``."""
        if self.drifted:
            return "drift"
        return "ok" if self._count >= self.config.window else "filling"

    def describe(self) -> dict:
        """The ``drift`` field of the stream's ``status`` entry."""
        ref = self.reference
        return {"state": self.state,
                "figure": None if self.figure is None else round(self.figure, 4),
                "limit": round(ref.limit, 4), "clear": round(self.clear, 4),
                "frames": self.frames, "window": self.config.window,
                "since": self.since, "reference": ref.source}
