"""Moving regions of a frame without a pretrained detector: the motion map thresholded,
closed and opened, split into connected components.

Deterministic: the map comes out of the network as exact differences of input frames
(the same in MXNet and ONNX Runtime), and everything after the threshold works on a
binary image with integer operations, so a frame's regions are the same offline, live and
in any batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: Grey levels (0-255) of change that mark a pixel as moving.
THRESHOLD = 20.0
#: Side (pixels at 128×128) of the square closing that joins a walker's edges into one
#: blob, and of the opening that drops specks.
CLOSE = 5
OPEN = 3
#: Smallest region kept, in pixels at 128×128.
MIN_AREA = 24
#: The frame side the sizes above are given at.
REFERENCE_SIDE = 128


@dataclass(frozen=True)
class RegionFinder:
    """Finds moving objects in a motion map.

    Args:
        threshold: Change, in grey levels, at which a pixel moves.
        close: Closing kernel side at 128×128 (scaled to the map's side).
        open: Opening kernel side at 128×128 (likewise).
        min_area: Smallest region in pixels at 128×128 (scaled by area).
    """

    threshold: float = THRESHOLD
    close: int = CLOSE
    open: int = OPEN
    min_area: int = MIN_AREA

    def __post_init__(self) -> None:
        if self.threshold <= 0 or self.close < 1 or self.open < 1 or self.min_area < 1:
            raise ValueError(f"region finding needs a positive threshold and kernel sides and "
                             f"area of at least 1, got {self}")

    def mask(self, motion: np.ndarray, pixel_scale: float,
             ignore: np.ndarray | None = None) -> np.ndarray:
        """uint8 (S, S) map of moving pixels (1) after the closing and opening."""
        side = motion.shape[-1]
        moving = (np.asarray(motion) * pixel_scale > self.threshold).astype(np.uint8)
        if ignore is not None:
            moving[ignore] = 0
        for size, op in ((self.close, cv2.MORPH_CLOSE), (self.open, cv2.MORPH_OPEN)):
            k = max(1, round(size * side / REFERENCE_SIDE))
            moving = cv2.morphologyEx(moving, op, np.ones((k, k), np.uint8))
        return moving

    def boxes(self, motion: np.ndarray, pixel_scale: float,
              ignore: np.ndarray | None = None) -> np.ndarray:
        """Moving regions of one (S, S) motion map.

        Args:
            motion: The map in model units.
            pixel_scale: Factor from model units to 0-255.
            ignore: Optional (S, S) bool map of pixels that never move.

        Returns:
            (K, 4) int boxes (x0, y0, x1, y1), exclusive ends, ordered top to bottom then
            left to right.
        """
        side = motion.shape[-1]
        moving = self.mask(motion, pixel_scale, ignore)
        count, _, stats, _ = cv2.connectedComponentsWithStats(moving, connectivity=8)
        least = self.min_area * (side / REFERENCE_SIDE) ** 2
        keep = [s for s in stats[1:count] if s[cv2.CC_STAT_AREA] >= least]
        boxes = np.array([[s[0], s[1], s[0] + s[2], s[1] + s[3]] for s in keep],
                         np.int64).reshape(-1, 4)
        return boxes[np.lexsort((boxes[:, 0], boxes[:, 1]))]


def box_cells(box: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Flat indices of the grid crops whose centre lies in ``box`` (the one nearest its
    centre when none does: a small object between grid points, or at the frame's edge).

    Args:
        box: (x0, y0, x1, y1).
        centres: Crop-centre coordinate of each grid position along an axis.

    Returns:
        Flat row-major indices into the G×G grid.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    g = len(centres)
    cols = np.flatnonzero((centres >= x0) & (centres < x1))
    rows = np.flatnonzero((centres >= y0) & (centres < y1))
    if not len(cols):
        cols = np.array([int(np.argmin(np.abs(centres - (x0 + x1) / 2)))])
    if not len(rows):
        rows = np.array([int(np.argmin(np.abs(centres - (y0 + y1) / 2)))])
    return (rows[:, None] * g + cols[None, :]).ravel()
