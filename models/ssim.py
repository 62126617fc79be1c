"""Structural similarity (SSIM) of images: the loss of the SSIM autoencoder (MXNet) and
its per-pixel map for scoring (NumPy), over the same uniform window.

SSIM(x, y) = (2 μx μy + C1)(2 σxy + C2) / ((μx² + μy² + C1)(σx² + σy² + C2)), with the means,
variances and covariance taken over a ``SSIM_WINDOW``×``SSIM_WINDOW`` window around each
pixel (Wang et al. 2004; Bergmann et al. 2019 train an autoencoder on 1 − SSIM).
"""

from __future__ import annotations

import cv2
import mxnet as mx
import numpy as np

#: Side of the window the local statistics are taken over (odd).
SSIM_WINDOW = 7
#: Stabilising constants for images in [0, 1] (K1 = 0.01, K2 = 0.03).
C1 = 0.01 ** 2
C2 = 0.03 ** 2


def _ssim(mean, x, y):
    """SSIM map from ``mean`` (a local-mean function) of same-shaped x and y."""
    mx_, my = mean(x), mean(y)
    sxx = mean(x * x) - mx_ * mx_
    syy = mean(y * y) - my * my
    sxy = mean(x * y) - mx_ * my
    return ((2 * mx_ * my + C1) * (2 * sxy + C2)) / ((mx_ * mx_ + my * my + C1) * (sxx + syy + C2))


def ssim_map(a: np.ndarray, b: np.ndarray, window: int = SSIM_WINDOW) -> np.ndarray:
    """Per-pixel SSIM of two batches of images.

    Args:
        a: (..., H, W) images in [0, 1] (float).
        b: Same shape.
        window: Side of the local window (odd).

    Returns:
        float32 (..., H, W) SSIM in [-1, 1]; borders reflect the image.
    """
    a = np.asarray(a, np.float32)
    b = np.asarray(b, np.float32)
    if a.shape != b.shape or a.ndim < 2:
        raise ValueError(f"SSIM needs two images of one shape, got {a.shape} and {b.shape}")
    h, w = a.shape[-2:]
    flat = (-1, h, w)

    def mean(x: np.ndarray) -> np.ndarray:
        x = x.reshape(flat)
        return np.stack([cv2.blur(f, (window, window), borderType=cv2.BORDER_REFLECT_101)
                         for f in x]).reshape(a.shape)

    return _ssim(mean, a, b).astype(np.float32)


def ssim_loss(pred: mx.nd.NDArray, target: mx.nd.NDArray,
              window: int = SSIM_WINDOW) -> mx.nd.NDArray:
    """1 − mean SSIM per image, for training (autograd records it).

    Args:
        pred: (N, C, H, W) reconstructions in [0, 1].
        target: (N, C, H, W) inputs.
        window: Side of the local window (odd).

    Returns:
        (N,) losses.
    """
    def mean(x):
        # Reflecting the border as the NumPy map does: pad, then a valid average.
        padded = mx.nd.pad(x, mode="reflect", pad_width=(0, 0, 0, 0, *(window // 2,) * 4))
        return mx.nd.Pooling(padded, kernel=(window, window), stride=(1, 1), pool_type="avg")

    return 1 - mx.nd.mean(_ssim(mean, pred, target), axis=(1, 2, 3))
