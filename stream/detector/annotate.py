"""Marking anomalies on the source frame: red tint or heat map, boxes, score; JPEG out."""

from __future__ import annotations

import cv2
import numpy as np

RED = (0, 0, 255)


def find_boxes(mask: np.ndarray, source_shape: tuple[int, ...], min_pixels: int = 4) -> list:
    """Bounding boxes of the connected anomalous regions, in source pixels.

    Args:
        mask: (h, w) bool anomaly mask at model resolution.
        source_shape: Shape of the source frame (H, W[, C]).
        min_pixels: Regions smaller than this (at model resolution) are ignored.

    Returns:
        ``[[x, y, w, h], ...]``, largest region first.
    """
    if not mask.any():
        return []
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
    sy = source_shape[0] / mask.shape[0]
    sx = source_shape[1] / mask.shape[1]
    boxes = []
    for x, y, w, h, area in sorted(stats[1:n].tolist(), key=lambda s: -s[4]):
        if area >= min_pixels:
            boxes.append([int(x * sx), int(y * sy), max(1, round(w * sx)), max(1, round(h * sy))])
    return boxes


class Annotator:
    """Draws anomalies on the source frame and encodes it as JPEG.

    Args:
        alpha: Strength of the red tint on anomalous pixels, or of a heat map's colours
            over the whole frame (0..1).
        jpeg_quality: JPEG quality of overlays.
    """

    def __init__(self, alpha: float = 0.5, jpeg_quality: int = 80) -> None:
        if not 0 <= alpha <= 1 or not 1 <= jpeg_quality <= 100:
            raise ValueError(f"alpha must be in [0, 1] and jpeg_quality in [1, 100], got "
                             f"{alpha} and {jpeg_quality}")
        self.alpha = alpha
        self.jpeg_quality = jpeg_quality

    def draw(self, source: np.ndarray, mask: np.ndarray | None, boxes: list, label: str,
             anomalous: bool, heat: np.ndarray | None = None) -> np.ndarray:
        """The annotated frame: source resolution, colour (BGR).

        Args:
            source: Source frame, (H, W) or (H, W, 3) uint8.
            mask: Anomaly mask at model resolution (None: nothing to tint).
            boxes: Boxes in source pixels.
            label: Text drawn in the corner (the score).
            anomalous: Whether the frame rule flagged the frame (label colour).
            heat: A heat map at model resolution, 0..1 (a classifier's activation map):
                drawn in JET colours over the whole frame instead of the mask's red tint.
        """
        image = cv2.cvtColor(source, cv2.COLOR_GRAY2BGR) if source.ndim == 2 or \
            source.shape[2] == 1 else source.copy()
        if heat is not None:
            image = self._blend_heat(image, heat)
        elif mask is not None and mask.any():
            big = cv2.resize(mask.view(np.uint8), (image.shape[1], image.shape[0]),
                             interpolation=cv2.INTER_NEAREST).astype(bool)
            tinted = image[big].astype(np.float32) * (1 - self.alpha)
            tinted[:, 2] += 255 * self.alpha
            image[big] = tinted.astype(np.uint8)
        for x, y, w, h in boxes:
            cv2.rectangle(image, (x, y), (x + w - 1, y + h - 1), RED, 2)
        scale = max(0.4, image.shape[0] / 600)
        at, thick = (6, int(32 * scale) + 4), max(1, int(2 * scale))
        # A dark outline keeps the label readable on a heat map's reds.
        cv2.putText(image, label, at, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2,
                    cv2.LINE_AA)
        cv2.putText(image, label, at, cv2.FONT_HERSHEY_SIMPLEX, scale,
                    RED if anomalous else (0, 255, 0), thick, cv2.LINE_AA)
        return image

    def _blend_heat(self, image: np.ndarray, heat: np.ndarray) -> np.ndarray:
        # Bilinear to the source size, so the map reads as smooth as the model made it.
        big = cv2.resize(np.asarray(heat, np.float32), (image.shape[1], image.shape[0]),
                         interpolation=cv2.INTER_LINEAR)
        levels = (np.clip(big, 0.0, 1.0) * 255).astype(np.uint8)
        colours = cv2.applyColorMap(levels, cv2.COLORMAP_JET)
        return cv2.addWeighted(image, 1 - self.alpha, colours, self.alpha, 0.0)

    def encode(self, image: np.ndarray) -> bytes:
        """JPEG bytes of an annotated frame."""
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            raise ValueError(f"cannot JPEG-encode an overlay of shape {image.shape}")
        return buf.tobytes()
