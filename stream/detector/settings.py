"""What a person may change of one stream while the detector runs: its threshold, whether
it is watched at all, its model and the regions it ignores. Set in the pipeline config
(``streams:``) and changed live over the control channel (:mod:`stream.wire.control`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

#: Most polygons in one stream's mask, and points in one polygon.
MAX_POLYGONS = 64
MAX_POINTS = 256
#: Largest coordinate of a point: far beyond any frame, well within OpenCV's int32 drawing
#: (larger values wrap around, drawing nothing, or stall the detector's loop for seconds).
MAX_COORD = 1 << 16

Polygon = tuple[tuple[float, float], ...]


def check_polygons(polygons: object, where: str = "mask") -> tuple[Polygon, ...]:
    """Polygons of [x, y] points in source pixels, checked and made hashable.

    Raises:
        ValueError: Naming the first bad polygon or point and the expected form.
    """
    form = "a list of polygons, each a list of at least 3 [x, y] points in source pixels"
    if not isinstance(polygons, (list, tuple)):
        raise ValueError(f"{where} must be {form}, got {polygons!r}")
    if len(polygons) > MAX_POLYGONS:
        raise ValueError(f"{where}: at most {MAX_POLYGONS} polygons, got {len(polygons)}")
    out = []
    for i, poly in enumerate(polygons):
        if not isinstance(poly, (list, tuple)) or not 3 <= len(poly) <= MAX_POINTS:
            raise ValueError(f"{where}[{i}] must be 3..{MAX_POINTS} [x, y] points, got {poly!r}")
        points = []
        for point in poly:
            ok = (isinstance(point, (list, tuple)) and len(point) == 2
                  and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                          and 0 <= v <= MAX_COORD for v in point))   # NaN, inf out too
            if not ok:
                raise ValueError(f"{where}[{i}]: {point!r} is not an [x, y] point of "
                                 f"source pixels from 0 to {MAX_COORD}")
            points.append((float(point[0]), float(point[1])))
        out.append(tuple(points))
    return tuple(out)


def check_threshold(value: object) -> float | None:
    """A threshold override: a finite number, or None for the calibrated one."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"a threshold is a finite number (or null for the calibrated one), "
                         f"got {value!r}")
    return float(value)


def ignore_map(polygons: tuple[Polygon, ...], source_shape: tuple[int, ...],
               side: int) -> np.ndarray | None:
    """The (side, side) bool map of model pixels the polygons cover (more than half of a
    pixel's source area), or None without polygons.

    The model sees the whole frame resized to a square (``models.contract``), so a
    polygon in source pixels is drawn at source size and resized the same way.
    """
    if not polygons:
        return None
    h, w = source_shape[:2]
    canvas = np.zeros((h, w), np.uint8)
    cv2.fillPoly(canvas, [np.round(np.asarray(p)).astype(np.int32) for p in polygons], 255)
    covered = cv2.resize(canvas, (side, side), interpolation=cv2.INTER_AREA)
    return covered > 127


@dataclass
class StreamSettings:
    """One stream's live settings (kept by stream id, whether or not it is sending now).

    Args:
        threshold: Overrides the model's calibrated threshold (None: the calibrated).
        detect: False: the stream's frames are dropped unscored (counted ``paused``),
            and its open event ends.
        model: Weights this stream is scored with ("" : the detector's default).
        mask: Polygons (source pixels) the anomaly map and boxes never count.
    """

    threshold: float | None = None
    detect: bool = True
    model: str = ""
    mask: tuple[Polygon, ...] = ()
    _ignore: dict = field(default_factory=dict, repr=False)

    def ignore(self, source_shape: tuple[int, ...], side: int) -> np.ndarray | None:
        """The mask at model resolution for frames of ``source_shape`` (cached)."""
        if not self.mask:
            return None
        key = (tuple(source_shape[:2]), side)
        if key not in self._ignore:
            self._ignore.clear()
            self._ignore[key] = ignore_map(self.mask, source_shape, side)
        return self._ignore[key]

    def set_mask(self, polygons: tuple[Polygon, ...]) -> None:
        self.mask = polygons
        self._ignore.clear()

    def describe(self, calibrated: float, model: str) -> dict:
        """What the control channel and ``status`` report of this stream's settings."""
        return {"threshold": calibrated if self.threshold is None else self.threshold,
                "calibrated_threshold": calibrated,
                "threshold_override": self.threshold is not None, "detect": self.detect,
                "model": model, "mask": [[list(p) for p in poly] for poly in self.mask]}
