"""Per-frame anomaly scoring: |x̂ − x| summed over 4×4 windows, thresholded per pixel."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RULES = ("area", "peak")
#: Side of the window the absolute difference is summed over.
WINDOW = 4


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


@dataclass(frozen=True)
class FrameScores:
    """Scores of a batch of B frames.

    Attributes:
        error: (B,) mean |x̂ − x| on the 0-255 scale.
        area: (B,) pixels (at model resolution) whose 4×4 sum exceeds the pixel threshold.
        peak: (B,) largest 4×4 sum on the 0-255 scale.
        score: (B,) the value the frame rule compares (``area`` or ``peak``).
        anomalous: (B,) the frame rule's verdict.
        mask: (B, H, W) anomalous pixels.
        sums: (B, H, W) the 4×4 sums H themselves.
    """

    error: np.ndarray
    area: np.ndarray
    peak: np.ndarray
    score: np.ndarray
    anomalous: np.ndarray
    mask: np.ndarray
    sums: np.ndarray


class Scorer:
    """Scores reconstructed frames against their inputs.

    Args:
        pixel_threshold: A pixel is anomalous where its 4×4 sum of |x̂ − x| (0-255
            scale) exceeds this; the default 4·255 is the public Ped2 notebook's.
        rule: ``area`` (a frame is anomalous when at least ``min_area`` pixels are) or
            ``peak`` (when its largest 4×4 sum reaches ``peak_threshold``, usually
            calibrated on held-out normal footage).
        min_area: Anomalous pixels (at model resolution) that make a frame anomalous
            under the ``area`` rule.
        peak_threshold: Threshold of the ``peak`` rule, on the 4×4-sum scale.
        pixel_scale: Factor from model units to 0-255 (``InputContract.pixel_scale``).
    """

    def __init__(self, pixel_threshold: float = 4 * 255.0, rule: str = "area",
                 min_area: int = 30, peak_threshold: float | None = None,
                 pixel_scale: float = 255.0) -> None:
        if rule not in RULES:
            raise ValueError(f"scorer rule {rule!r} is not one of {list(RULES)}")
        if rule == "peak" and peak_threshold is None:
            raise ValueError("scorer rule 'peak' needs peak_threshold: calibrate it with "
                             "`vadstream train` or set scorer.peak_threshold")
        if pixel_threshold <= 0 or min_area < 1:
            raise ValueError(f"pixel_threshold must be > 0 and min_area >= 1, got "
                             f"{pixel_threshold} and {min_area}")
        self.pixel_threshold = float(pixel_threshold)
        self.rule = rule
        self.min_area = int(min_area)
        self.peak_threshold = None if peak_threshold is None else float(peak_threshold)
        self.pixel_scale = float(pixel_scale)

    @property
    def threshold(self) -> float:
        """The threshold the frame rule compares ``score`` against."""
        return float(self.min_area) if self.rule == "area" else float(self.peak_threshold)

    def score(self, recon: np.ndarray, frames: np.ndarray) -> FrameScores:
        """Score a batch.

        Args:
            recon: (B, H, W) reconstruction in model units.
            frames: (B, H, W) inputs in model units.

        Returns:
            The batch's scores and anomaly masks.
        """
        diff = np.abs(recon - frames)
        diff *= self.pixel_scale
        sums = window_sum(diff)
        mask = sums > self.pixel_threshold
        error = diff.mean(axis=(-2, -1))
        area = mask.sum(axis=(-2, -1))
        peak = sums.max(axis=(-2, -1))
        if self.rule == "area":
            score = area.astype(np.float64)
            anomalous = area >= self.min_area
        else:
            score = peak.astype(np.float64)
            anomalous = peak >= self.peak_threshold
        return FrameScores(error=error, area=area, peak=peak, score=score,
                           anomalous=anomalous, mask=mask, sums=sums)


@dataclass(frozen=True)
class ScorerConfig:
    """``scorer:`` in the configs: the :class:`Scorer`'s arguments, plus ``rule: auto``,
    which takes the weights' calibrated peak threshold when they have one and falls back
    to the area rule otherwise."""

    pixel_threshold: float = 4 * 255.0
    rule: str = "auto"
    min_area: int = 30
    peak_threshold: float | None = None

    def __post_init__(self) -> None:
        if self.rule not in (*RULES, "auto"):
            raise ValueError(f"rule {self.rule!r} is not one of {[*RULES, 'auto']}")
        if self.pixel_threshold <= 0 or self.min_area < 1:
            raise ValueError(f"pixel_threshold must be > 0 and min_area >= 1, got "
                             f"{self.pixel_threshold} and {self.min_area}")

    def build(self, calibration: dict, pixel_scale: float) -> Scorer:
        """The scorer, with calibration from the weights filled in where asked for."""
        rule, peak = self.rule, self.peak_threshold
        if rule == "auto":
            rule = "peak" if peak is not None or "peak_threshold" in calibration else "area"
        if rule == "peak" and peak is None:
            peak = calibration.get("peak_threshold")
        return Scorer(pixel_threshold=self.pixel_threshold, rule=rule, min_area=self.min_area,
                      peak_threshold=peak, pixel_scale=pixel_scale)
