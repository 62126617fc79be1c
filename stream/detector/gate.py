"""The motion gate: a window in which nothing moves is scored without the network.

A window's motion is the scorer's own measure of change (:func:`models.scoring.window_sum`,
the 4×4 window sums) applied to the input itself: the largest 4×4 sum of
|x_t − x_{t−1}| (0-255 scale, model resolution) over every pair of consecutive frames of
the window and every location. A window whose motion is at most the gate's ``bound`` is
*still*: no pixel block changed by more than sensor noise.

The bound is calibrated on normal training clips (``python -m train.gate``, stored as
``calibration["gate"]`` in the weights' metadata): still windows are made from real
training frames held still with added noise of increasing size, scored by the real
network, and the bound is the largest motion at which every such window scored at most
half the frame threshold, and at most half the quietest motion any normal training window
has (a walker anywhere is never still). ``score`` is the largest rule value those still
windows reached: a gated frame is reported with that value (and ``gated``), which is
below the threshold, so it decides "normal" as the network did on every still window of
the calibration. A stream whose threshold is set at or below ``score`` is never gated.

It applies to every family whose windows hold at least two frames (a change exists) and
whose weights carry a calibrated gate, under a scorer without smoothing (``smooth`` 1: a
gated value never enters another frame's moving mean); nothing here names a family.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.scoring import window_sum
from stream.detector.config import check_gate


def window_motion(frames: np.ndarray, pixel_scale: float) -> float:
    """The largest 4×4 sum of |x_t − x_{t−1}| (0-255 scale) over a window's frames.

    Args:
        frames: (T, H, W) the window in model units, T ≥ 2.
        pixel_scale: Factor from model units to 0-255.

    Returns:
        The window's motion.
    """
    change = np.abs(np.diff(np.asarray(frames, np.float32), axis=0))
    change *= pixel_scale
    return float(window_sum(change).max())


@dataclass(frozen=True)
class Gate:
    """A model's motion gate.

    Attributes:
        bound: A window whose motion is at most this is still (skipped).
        score: The rule value a still window's frames are reported with.
        pixel_scale: Factor from model units to 0-255.
    """

    bound: float
    score: float
    pixel_scale: float

    def still(self, frames: np.ndarray, threshold: float) -> bool:
        """Whether a window may skip the network under a stream's ``threshold``."""
        return self.score < threshold and window_motion(frames, self.pixel_scale) <= self.bound


def gate_for(setting: str | float, calibration: dict, window: int, smooth: int,
             pixel_scale: float, weights: str = "the weights") -> Gate | None:
    """The gate a model runs with (None: every window runs the network).

    Args:
        setting: ``detector.gate``: ``off``; ``auto`` (the calibrated gate where the
            weights carry one and the model can use it, else none); ``on`` (the
            calibrated gate, refused where there is none); or a number: that bound, with
            the calibrated still score (0 where none is calibrated).
        calibration: The weights' calibration metadata.
        window: Frames per window.
        smooth: The scorer's moving-mean length.
        pixel_scale: Factor from model units to 0-255.
        weights: Named in errors.

    Raises:
        ValueError: For ``on`` or a number where the gate cannot hold.
    """
    check_gate(setting)
    if setting == "off":
        return None
    calibrated = calibration.get("gate")
    why = None
    if window < 2:
        why = "its windows hold one frame (no motion to measure)"
    elif smooth != 1:
        why = f"its scorer smooths over {smooth} frames (a gated value would enter the mean)"
    elif calibrated is None and setting == "on":
        why = "its weights carry no calibrated gate (run `python -m train.gate` on them)"
    if why is not None:
        if setting == "auto":
            return None
        raise ValueError(f"detector.gate {setting!r}: {weights} cannot be gated: {why}; "
                         "set detector.gate off or auto")
    if setting == "auto" and calibrated is None:
        return None
    score = float(calibrated["score"]) if calibrated is not None else 0.0
    bound = float(calibrated["bound"]) if setting in ("auto", "on") else float(setting)
    return Gate(bound=bound, score=score, pixel_scale=pixel_scale)
