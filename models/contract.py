"""The input contract: how a source frame becomes a model input, in one place.

Training, evaluation and the live detector all call :meth:`InputContract.preprocess`,
and the weights' metadata records the contract they were trained with, so a frame
is prepared the same way everywhere.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from models.paths import weights_paths

_INTERPOLATIONS = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR}


@dataclass(frozen=True)
class InputContract:
    """Grayscale, resized to ``size``×``size``, scaled to [0, 1], then standardised.

    Args:
        size: Side of the square model input in pixels (Chong & Tay: 227).
        mean: Subtracted after scaling to [0, 1] (e.g. the training set's mean intensity).
        std: Divides after subtracting ``mean``; must be positive.
        interpolation: Resize method, ``area`` or ``linear``.
    """

    size: int = 227
    mean: float = 0.0
    std: float = 1.0
    interpolation: str = "area"

    def __post_init__(self) -> None:
        if self.size < 8:
            raise ValueError(f"input contract size must be at least 8 pixels, got {self.size}")
        if not self.std > 0:
            raise ValueError(f"input contract std must be positive, got {self.std}")
        if self.interpolation not in _INTERPOLATIONS:
            raise ValueError(f"input contract interpolation {self.interpolation!r} is not one "
                             f"of {sorted(_INTERPOLATIONS)}")

    @property
    def shape(self) -> tuple[int, int]:
        """Shape of one preprocessed frame."""
        return (self.size, self.size)

    @property
    def pixel_scale(self) -> float:
        """Factor from model units to the 0-255 intensity scale (for differences)."""
        return 255.0 * self.std

    def fit(self, frame: np.ndarray) -> np.ndarray:
        """A source frame greyed and resized to the contract's size, still uint8: what
        :meth:`preprocess` does before scaling. A capture that sends fitted frames
        (``vadstream capture --fit``) hands the detector the very pixels it would have
        made itself, at a fraction of the bytes and of its CPU time.

        Args:
            frame: uint8 image, (H, W) grayscale or (H, W, 3) BGR as OpenCV reads it.

        Returns:
            uint8 (size, size); the frame itself where it already fits.

        Raises:
            ValueError: If the frame is not a uint8 grayscale or 3-channel image.
        """
        if frame.dtype != np.uint8:
            raise ValueError(f"frame dtype must be uint8, got {frame.dtype}")
        if frame.ndim == 3 and frame.shape[2] == 3:
            frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        elif frame.ndim == 3 and frame.shape[2] == 1:
            frame = frame[:, :, 0]
        elif frame.ndim != 2:
            raise ValueError(f"frame must be (H, W) or (H, W, 3), got shape {frame.shape}")
        if frame.shape != (self.size, self.size):
            frame = cv2.resize(frame, (self.size, self.size),
                               interpolation=_INTERPOLATIONS[self.interpolation])
        return frame

    def preprocess(self, frame: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Turn one source frame into a model input.

        Args:
            frame: uint8 image, (H, W) grayscale or (H, W, 3) BGR as OpenCV reads it.
            out: Optional float32 (size, size) array to write into (no allocation).

        Returns:
            float32 (size, size) array in model units.

        Raises:
            ValueError: If the frame is not a uint8 grayscale or 3-channel image.
        """
        frame = self.fit(frame)
        if out is None:
            out = np.empty((self.size, self.size), np.float32)
        scale = 1.0 / self.pixel_scale
        np.multiply(frame, scale, out=out, casting="unsafe")
        if self.mean:
            out -= self.mean / self.std
        return out

    def to_dict(self) -> dict:
        """The contract as plain JSON-ready values (for the weights' metadata)."""
        return asdict(self)


def read_contract(weights: str | Path) -> InputContract:
    """The input contract recorded in a weights stem's ``.json``, read without loading
    MXNet (for a capture that fits its frames).

    Raises:
        FileNotFoundError: If the ``.json`` is missing, saying what to give.
        ValueError: If it records no valid contract.
    """
    _, meta = weights_paths(weights)
    if not meta.is_file():
        raise FileNotFoundError(f"weights metadata {meta} not found: give the weights the "
                                "stream is scored with (a stem with its .json)")
    data = json.loads(meta.read_text()).get("contract")
    if not isinstance(data, dict):
        raise ValueError(f"{meta} records no input contract; retrain with `vadstream train`")
    return InputContract(**data)
