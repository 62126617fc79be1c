"""The no-model baseline: how anomalous a frame looks from frame differences alone.

``vadstream evaluate`` reports it beside the model under the same protocols, so a reader
sees what the network adds over plain motion. The score is the ``motion`` rule's with the
input in place of the reconstruction error: per frame t, the mean of the largest
:data:`models.scoring.TOP_SHARE` of the 4×4 window sums (:func:`models.scoring.window_sum`)
of |x_t − x_{t−1}| on the 0–255 scale. It is causal like the live rule: a clip's first
frame has no frame before it and scores 0.
"""

from __future__ import annotations

import numpy as np

from models.scoring import top_share_mean, window_sum

#: Frames whose differences are summed at once (bounds the memory of a long clip).
_CHUNK = 64


def frame_difference_scores(frames: np.ndarray, pixel_scale: float = 255.0) -> np.ndarray:
    """The no-model score of every frame of one clip.

    Args:
        frames: (F, H, W) preprocessed frames in model units (the weights' input contract).
        pixel_scale: Factor from model units to 0–255 (``InputContract.pixel_scale``); the
            contract's mean cancels in a difference.

    Returns:
        (F,) float64 scores; the first frame's is 0.

    Raises:
        ValueError: If ``frames`` is not (F, H, W).
    """
    frames = np.asarray(frames, np.float32)
    if frames.ndim != 3:
        raise ValueError(f"frames must be (F, H, W), got shape {frames.shape}")
    out = np.zeros(len(frames))
    for lo in range(1, len(frames), _CHUNK):
        hi = min(lo + _CHUNK, len(frames))
        change = np.abs(frames[lo:hi] - frames[lo - 1:hi - 1])
        change *= pixel_scale
        out[lo:hi] = top_share_mean(window_sum(change), dtype=np.float64)
    return out
