"""Transposed convolutions rewritten as ordinary convolutions over stride phases.

A transposed convolution (``Deconvolution``) with stride ``s`` and kernel ``k`` writes output
row ``s*m + r`` from input rows ``m - t`` through kernel row ``s*t + r`` only. Each output
phase ``(ry, rx)`` is therefore an ordinary convolution of the input with a
``ceil(k/s)``-tap kernel, and all ``s*s`` phases together are one convolution whose output
channels are the phases. oneDNN runs such convolutions about twice as fast as the
transposed convolutions themselves (and a one-channel transposed convolution far slower).

Everything here is weight algebra in NumPy; the networks that use it live in
:mod:`models.stae.inference`.
"""

from __future__ import annotations

import math

import numpy as np


def phase_kernels(weight: np.ndarray, stride: int) -> np.ndarray:
    """The convolution that computes every stride phase of a transposed convolution.

    With ``taps = ceil(k / stride)``, convolving the input (padded by ``taps - 1`` on each
    side) with the returned kernel gives, in output channel ``(ry*stride + rx)*out + o``
    at ``(m, n)``, the transposed convolution's output ``o`` at
    ``(stride*m + ry, stride*n + rx)``, bias aside. Taps that fall outside the ``k × k``
    kernel are zero.

    Args:
        weight: ``Deconvolution`` weight, (in, out, k, k).
        stride: Its stride.

    Returns:
        Convolution weight, (stride² · out, in, taps, taps).
    """
    cin, cout, k, _ = weight.shape
    taps = math.ceil(k / stride)
    out = np.zeros((stride, stride, cout, cin, taps, taps), weight.dtype)
    for ry in range(stride):
        for rx in range(stride):
            for u in range(taps):
                ky = stride * (taps - 1 - u) + ry
                for v in range(taps):
                    kx = stride * (taps - 1 - v) + rx
                    if ky < k and kx < k:
                        out[ry, rx, :, :, u, v] = weight[:, :, ky, kx].T
    return out.reshape(stride * stride * cout, cin, taps, taps)


def compose_over_phases(kernel: np.ndarray, inner: int, outer: int) -> tuple[np.ndarray, int]:
    """Fold a phase convolution that reads an interleaved image into one that reads the
    phases themselves, so the interleaved image is never built.

    ``kernel`` (``outer² · o`` phase channels, ``c`` inputs, ``t × t``, padding ``t - 1``)
    reads an image whose pixel ``(inner*m + ry, inner*n + rx)`` is channel
    ``(ry*inner + rx)*c + ch`` of a phase tensor at ``(m, n)``. The returned kernel reads
    that phase tensor directly (padding returned alongside) and writes, in channel
    ``py*inner*outer + px`` with ``py = outer*ey + Ry`` (likewise ``px``), the final
    image's pixel ``(inner*outer*n + py, ...)``: depth-to-space with block
    ``inner*outer`` then gives the final image. Only ``o == 1`` is supported.

    Args:
        kernel: (outer² , inner²-interleaved input channels c, t, t).
        inner: Stride of the phases the input is made of.
        outer: Stride of the phases ``kernel`` computes.

    Returns:
        (kernel of shape ((inner*outer)², inner² · c, a, a), its padding).
    """
    phases, c, t, _ = kernel.shape
    if phases != outer * outer:
        raise ValueError(f"kernel has {phases} output channels; one per outer phase "
                         f"({outer * outer}) is supported")
    pad = t - 1
    lo = -pad // inner                      # tap offsets span lo..hi phase rows
    hi = (inner - 1 - pad + t - 1) // inner
    taps = hi - lo + 1
    block = inner * outer
    out = np.zeros((block, block, inner, inner, c, taps, taps), kernel.dtype)
    for ey in range(inner):
        for ex in range(inner):
            for u in range(t):
                qy = ey - pad + u
                ry, ay = qy % inner, qy // inner - lo
                for v in range(t):
                    qx = ex - pad + v
                    rx, ax = qx % inner, qx // inner - lo
                    for big_ry in range(outer):
                        for big_rx in range(outer):
                            py, px = outer * ey + big_ry, outer * ex + big_rx
                            out[py, px, ry, rx, :, ay, ax] += \
                                kernel[big_ry * outer + big_rx, :, u, v]
    return out.reshape(block * block, inner * inner * c, taps, taps), -lo


def interleave_kernel(block: int) -> np.ndarray:
    """``Deconvolution`` weight (block², 1, block, block) that is depth-to-space: with
    stride ``block`` it writes channel ``py*block + px`` at ``(m, n)`` to pixel
    ``(block*m + py, block*n + px)``. MXNet's own ``depth_to_space`` is several times
    slower here than this one-multiply-per-pixel transposed convolution."""
    out = np.zeros((block * block, 1, block, block), np.float32)
    for py in range(block):
        for px in range(block):
            out[py * block + px, 0, py, px] = 1.0
    return out
