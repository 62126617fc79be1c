"""Per-frame anomaly scoring from 4×4 window sums of the reconstruction error.

Rules ``area``, ``peak`` and ``error`` look at |x̂ − x| itself; ``motion`` looks at how
that error changes from one frame to the next, |Δ(x̂ − x)|: the autoencoder reproduces
the motion it learned as normal, so a change in the error that it did not follow marks
motion it did not expect (a bike among walkers), while a walker's steady texture error
cancels out.

``relative`` makes a score comparable across scenes and crowd densities: each location's
4×4 sum is measured against what normal footage leaves there (its mean, the baseline, and
its spread), so a far, small person and a near, large one count alike, and a busy walkway
does not raise the floor everywhere.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

RULES = ("area", "peak", "error", "motion", "relative", "top")
#: Every rule a shipped family scores by: the reconstruction rules above and a
#: classifier's ``probability`` (:mod:`models.cam.family`) and an object autoencoder's
#: ``object`` (:mod:`models.object_ae.family`), and a fused model's ``fused``
#: (:mod:`models.fused.family`).
KNOWN_RULES = (*RULES, "probability", "object", "fused")
#: Side of the window the absolute difference is summed over.
WINDOW = 4
#: The per-pixel threshold of the area and peak rules, on a window's sum of 0-255 errors
#: (4 x 255, the public Ped2 notebook's): the one home of ``scorer.pixel_threshold``'s
#: default (the configs leave it out; calibration stores the value it used).
PIXEL_THRESHOLD = 4 * 255.0
#: Frames before the first scored one that scoring reads (the error's change into it).
LOOKBACK = 1
#: The ``motion`` rule averages this share of a frame's largest 4×4 sums (the local
#: map's top, robust to one noisy window; a person-sized region at 227×227).
TOP_SHARE = 0.01


def window_sum(diff: np.ndarray) -> np.ndarray:
    """Sum of every 4×4 window, the size of the input, for a batch of frames at once.

    Equal to ``scipy.signal.convolve2d(d, np.ones((4, 4)), mode="same")`` per frame:
    output (i, j) sums rows i-2..i+1 and columns j-2..j+1, zero outside the frame.

    Args:
        diff: (..., H, W) array.

    Returns:
        Array of the same shape and float32.
    """
    d = np.asarray(diff, dtype=np.float32)
    pad = [(0, 0)] * (d.ndim - 2) + [(2, 1), (2, 1)]
    p = np.pad(d, pad)
    h, w = d.shape[-2:]
    rows = p[..., 0:h + 3, 0:w] + p[..., 0:h + 3, 1:w + 1]
    rows += p[..., 0:h + 3, 2:w + 2]
    rows += p[..., 0:h + 3, 3:w + 3]
    out = rows[..., 0:h, :] + rows[..., 1:h + 1, :]
    out += rows[..., 2:h + 2, :]
    out += rows[..., 3:h + 3, :]
    return out


def top_share_mean(maps: np.ndarray, share: float = TOP_SHARE,
                   dtype: type | None = None) -> np.ndarray:
    """Mean of each map's largest ``share`` of values (at least one value).

    Args:
        maps: (B, H, W) maps.
        share: Fraction of each map's values to average, in (0, 1].
        dtype: Of the mean (None: the maps' own, as the live scorer takes it).

    Returns:
        (B,) means.

    Raises:
        ValueError: If ``share`` is outside (0, 1].
    """
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share}")
    flat = maps.reshape(len(maps), -1)
    k = max(1, int(flat.shape[1] * share))
    return np.partition(flat, flat.shape[1] - k, axis=1)[:, -k:].mean(axis=1, dtype=dtype)


@dataclass(frozen=True)
class FrameScores:
    """Scores of a batch of B frames.

    Attributes:
        error: (B,) mean |x̂ − x| on the 0-255 scale.
        area: (B,) pixels (at model resolution) whose 4×4 sum exceeds the pixel threshold.
        peak: (B,) largest 4×4 sum on the 0-255 scale.
        motion: (B,) mean of the largest TOP_SHARE of the 4×4 sums of |Δ(x̂ − x)|.
        relative: (B,) mean of the largest TOP_SHARE of the normalised map (the 4×4 sums
            less the baseline, over the spread); NaN without a calibrated spread.
        top: (B,) mean of the largest TOP_SHARE of the 4×4 sums less the baseline (a
            ``peak`` that one noisy window cannot make).
        score: (B,) the value the frame rule compares.
        anomalous: (B,) the frame rule's verdict.
        map: (B, H, W) the rule's anomaly map: the 4×4 sums of |Δ(x̂ − x)| for
            ``motion``, the normalised map for ``relative``, else the 4×4 sums of
            |x̂ − x| less the baseline.
        mask: (B, H, W) anomalous pixels (``map`` above the scorer's ``map_threshold``).
        sums: (B, H, W) the 4×4 sums of |x̂ − x| themselves (no baseline).
    """

    error: np.ndarray
    area: np.ndarray
    peak: np.ndarray
    motion: np.ndarray
    relative: np.ndarray
    top: np.ndarray
    score: np.ndarray
    anomalous: np.ndarray
    map: np.ndarray
    mask: np.ndarray
    sums: np.ndarray


class Scorer:
    """Scores reconstructed frames against their inputs.

    Args:
        pixel_threshold: A pixel is anomalous where its 4×4 sum of |x̂ − x| (0-255
            scale), less its ``baseline``, exceeds this; the default 4·255 is the public
            Ped2 notebook's.
        rule: Which per-frame value decides: ``area`` (anomalous pixels, at model
            resolution), ``peak`` (the largest 4×4 sum above baseline), ``error``
            (mean |x̂ − x|), ``motion`` (the top of the 4×4 map of |Δ(x̂ − x)|; its
            pixels are anomalous where that map exceeds ``threshold``) or ``relative``
            (the top of the map normalised by ``baseline`` and ``spread``; likewise) or
            ``top`` (the top of the 4×4 sums less the baseline; likewise).
        threshold: A frame is anomalous when its ``rule`` value reaches this; usually
            calibrated on held-out normal footage by ``vadstream train``.
        pixel_scale: Factor from model units to 0-255 (``InputContract.pixel_scale``).
        baseline: Optional (H, W) map of the 4×4 sums that normal footage produces at
            each pixel (edges and fine texture are never reconstructed perfectly);
            subtracted before thresholding and taking the peak. None: zero.
        spread: Optional (H, W) map of how much those sums vary on normal footage at each
            pixel (floored, see :func:`spread_map`); rule ``relative`` needs it.
        smooth: Frames of the causal moving mean a stream's rule values pass through before
            the threshold (:class:`Smoother`; 1: none). A window's own scores are never
            smoothed: the stream's :class:`Smoother` does it, live and offline alike.
    """

    def __init__(self, pixel_threshold: float = PIXEL_THRESHOLD, rule: str = "area",
                 threshold: float = 30.0, pixel_scale: float = 255.0,
                 baseline: np.ndarray | None = None, spread: np.ndarray | None = None,
                 smooth: int = 1) -> None:
        check_rule(rule, pixel_threshold)
        check_smooth(smooth)
        self.smooth = smooth
        if rule == "relative" and (baseline is None or spread is None):
            raise ValueError("scorer rule 'relative' needs the calibrated baseline and spread "
                             "maps: use weights calibrated by this version's `vadstream "
                             "train` (or `vadstream calibrate`), and scorer.baseline true")
        self.pixel_threshold = float(pixel_threshold)
        self.rule = rule
        self.threshold = float(threshold)
        self.pixel_scale = float(pixel_scale)
        self.baseline = None if baseline is None else np.asarray(baseline, np.float32)
        self.spread = None if spread is None else np.asarray(spread, np.float32)

    @property
    def map_threshold(self) -> float:
        """The value above which a pixel of the rule's anomaly map is anomalous."""
        if self.rule in ("motion", "relative", "top", "peak"):
            return self.threshold
        return self.pixel_threshold

    def score(self, recon: np.ndarray, frames: np.ndarray, first: int = 0,
              ignore: np.ndarray | None = None) -> FrameScores:
        """Score frames ``first`` to the end of one window.

        Args:
            recon: (T, H, W) the window's reconstruction in model units.
            frames: (T, H, W) the window's input in model units.
            first: The first frame to score (the earlier ones give the error's change; frame
                0 of a window has no change, so its ``motion`` is 0).
            ignore: Optional (H, W) bool map of pixels that never count (a stream's ignore
                mask): their error is taken as 0.

        Returns:
            Scores and anomaly maps of the T − ``first`` frames.

        Raises:
            ValueError: If the window has fewer than 2 frames or ``first`` is outside it.
        """
        n = len(frames)
        if not 0 <= first < n or (self.rule == "motion" and n < 2):
            raise ValueError(f"scoring needs a first frame inside the window (and rule motion "
                             f"a window of at least 2 frames), got {n} frames and first {first}")
        residual = recon - frames
        residual *= self.pixel_scale
        if ignore is not None:
            residual[:, ignore] = 0
        diff = np.abs(residual[first:])
        # The change into frame t. A window's first frame has no frame before it: no
        # change (taking the next frame's would look into the future).
        later = np.arange(max(first, 1), n)
        change = np.abs(residual[later] - residual[later - 1])
        if first == 0:
            change = np.concatenate([np.zeros((1, *frames.shape[1:]), change.dtype), change])
        return self.from_sums(window_sum(diff), diff.mean(axis=(-2, -1)), window_sum(change))

    def excess(self, sums: np.ndarray) -> np.ndarray:
        """The 4×4 sums less the baseline (the map that is thresholded)."""
        return sums if self.baseline is None else sums - self.baseline

    def from_sums(self, sums: np.ndarray, error: np.ndarray,
                  motion_sums: np.ndarray) -> FrameScores:
        """Scores from a batch's 4×4 sums of |x̂ − x|, its mean error and the 4×4 sums of
        |Δ(x̂ − x)| (``sums`` is kept)."""
        excess = self.excess(sums)
        motion = top_share_mean(motion_sums)
        above = excess > self.pixel_threshold
        if self.spread is not None and self.baseline is not None:
            normalised = excess / self.spread
            relative = top_share_mean(normalised)
        else:
            normalised, relative = None, np.full(len(sums), np.nan, np.float32)
        if self.rule == "motion":
            anomaly_map, mask = motion_sums, motion_sums > self.threshold
        elif self.rule == "relative":
            anomaly_map, mask = normalised, normalised > self.threshold
        elif self.rule in ("top", "peak"):   # a flagged frame has pixels above its threshold
            anomaly_map, mask = excess, excess > self.threshold
        else:
            anomaly_map, mask = excess, above
        values = {"error": error, "area": above.sum(axis=(-2, -1)),
                  "peak": excess.max(axis=(-2, -1)), "motion": motion, "relative": relative,
                  "top": top_share_mean(excess)}
        score = values[self.rule].astype(np.float64)
        return FrameScores(error=error, area=values["area"], peak=values["peak"],
                           motion=motion, relative=relative, top=values["top"], score=score,
                           anomalous=score >= self.threshold, map=anomaly_map, mask=mask,
                           sums=sums)


class Smoother:
    """The causal moving mean of one stream's frame values over its last ``frames`` scored
    frames (fewer at the stream's start or after a cut): what the frame rule thresholds when
    ``smooth`` is above 1. An anomaly lasts many frames; one noisy normal frame does not.

    Args:
        frames: Frames averaged (1: the value itself).
    """

    def __init__(self, frames: int = 1) -> None:
        check_smooth(frames)
        self.frames = frames
        self._recent: deque[float] = deque(maxlen=frames)

    def reset(self) -> None:
        """Forget the values (the stream was cut)."""
        self._recent.clear()

    def push(self, value: float) -> float:
        """Add the next frame's value; its smoothed value. A value that is not finite (a
        network that output NaN) is not added, and its frame's smoothed value is NaN, as
        offline (:func:`smooth_values`) skips it."""
        if not np.isfinite(value):
            return float("nan")
        self._recent.append(float(value))
        return sum(self._recent) / len(self._recent)


def smooth_values(values: np.ndarray, frames: int) -> np.ndarray:
    """:class:`Smoother` over one clip's frame values, offline: frames never scored (NaN)
    are skipped, as the live detector never pushes them, and stay NaN."""
    values = np.asarray(values, np.float64)
    out = np.full(len(values), np.nan)
    smoother = Smoother(frames)
    for i in np.flatnonzero(np.isfinite(values)):
        out[i] = smoother.push(values[i])
    return out


def check_smooth(frames: int) -> None:
    """Raise ValueError unless ``frames`` is a positive whole number of frames."""
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise ValueError(f"smooth must be a whole number of frames, at least 1, got {frames!r}")


def spread_map(std: np.ndarray) -> np.ndarray:
    """The ``relative`` rule's divisor from the per-pixel standard deviation of normal 4×4
    sums: at least the median deviation, so that a calm region (a wall, the sky), whose
    sums hardly vary, does not turn sensor noise into huge normalised values."""
    std = np.asarray(std, np.float32)
    return np.maximum(std, max(float(np.median(std)), 1e-6)).astype(np.float32)


def check_rule(rule: str, pixel_threshold: float, known: tuple[str, ...] = RULES) -> None:
    """Raise ValueError for a rule not in ``known`` or a non-positive pixel threshold."""
    if rule not in known:
        raise ValueError(f"scorer rule {rule!r} is not one of {list(known)}")
    if pixel_threshold <= 0:
        raise ValueError(f"pixel_threshold must be positive, got {pixel_threshold}")


@dataclass(frozen=True)
class ScorerConfig:
    """``scorer:`` in the configs: the :class:`Scorer`'s arguments, where ``rule: auto``
    and ``threshold: null`` (the defaults) take the rule and threshold that training
    calibrated on held-out normal clips and stored in the weights' metadata, and
    ``baseline: true`` subtracts the calibrated per-pixel baseline when there is one (and
    lets rule ``relative`` divide by the calibrated spread). ``smooth: null`` takes the
    calibrated moving mean's length (1 for weights calibrated without one); a calibrated
    threshold holds only for the length it was calibrated at, so setting ``smooth`` without
    ``threshold`` to another length is refused."""

    pixel_threshold: float = PIXEL_THRESHOLD
    rule: str = "auto"
    threshold: float | None = None
    baseline: bool = True
    smooth: int | None = None

    def __post_init__(self) -> None:
        if self.rule != "auto":
            check_rule(self.rule, self.pixel_threshold, KNOWN_RULES)
        if self.smooth is not None:
            check_smooth(self.smooth)

    def build(self, calibration: dict, pixel_scale: float,
              baseline: np.ndarray | None = None, spread: np.ndarray | None = None,
              scorer_class: type[Scorer] | None = None) -> Scorer:
        """The scorer, with the weights' calibration filling in what is left to it.

        Args:
            calibration: The weights' calibration metadata.
            pixel_scale: ``InputContract.pixel_scale``.
            baseline: The weights' calibrated baseline map, used if ``self.baseline``.
            spread: The weights' calibrated spread map, likewise.
            scorer_class: :class:`Scorer` or a subclass that maps (output, input) to its
                own per-pixel error (None: :class:`Scorer`).

        Raises:
            ValueError: If a rule needs a calibrated threshold the weights lack.
        """
        rule = calibration.get("rule", "area") if self.rule == "auto" else self.rule
        threshold = self.threshold
        if threshold is None and rule in ("area", "peak", "top"):
            # Calibrated area/peak thresholds hold only for the map they were measured on.
            if not self.baseline and "baseline" in calibration.get("arrays", []):
                raise ValueError("the calibrated thresholds assume the baseline: with "
                                 "scorer.baseline false, set scorer.threshold too")
            calibrated = calibration.get("pixel_threshold", self.pixel_threshold)
            if float(calibrated) != self.pixel_threshold:
                raise ValueError(f"the calibrated thresholds assume pixel_threshold "
                                 f"{calibrated}: with {self.pixel_threshold}, set "
                                 "scorer.threshold too (or recalibrate)")
        calibrated_smooth = int(calibration.get("smooth", 1))
        smooth = calibrated_smooth if self.smooth is None else self.smooth
        if threshold is None and smooth != calibrated_smooth:
            raise ValueError(f"the calibrated thresholds assume scorer.smooth "
                             f"{calibrated_smooth}: with {smooth}, set scorer.threshold too "
                             "(or recalibrate)")
        if threshold is None:
            threshold = calibration.get("thresholds", {}).get(rule)
        if threshold is None:
            raise ValueError(f"no threshold for scorer rule {rule!r}: these weights carry no "
                             "calibration for it; set scorer.threshold or retrain with "
                             "`vadstream train`")
        return (scorer_class or Scorer)(
            pixel_threshold=self.pixel_threshold, rule=rule, threshold=threshold,
            pixel_scale=pixel_scale, baseline=baseline if self.baseline else None,
            spread=spread if self.baseline else None, smooth=smooth)
