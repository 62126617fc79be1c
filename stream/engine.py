"""Batched inference of the autoencoder on the chosen MXNet device."""

from __future__ import annotations

import logging
from pathlib import Path

import mxnet as mx
import numpy as np

from models.weights import load_calibration_arrays, load_weights

log = logging.getLogger(__name__)
DEVICES = ("auto", "cpu", "gpu")


def pick_context(device: str) -> mx.Context:
    """MXNet context for ``auto`` (GPU when MXNet sees one), ``cpu`` or ``gpu``.

    Raises:
        ValueError: For an unknown device, or ``gpu`` when no GPU is visible.
    """
    if device not in DEVICES:
        raise ValueError(f"device {device!r} is not one of {list(DEVICES)}")
    gpus = mx.context.num_gpus()
    if device == "gpu" and not gpus:
        raise ValueError("device 'gpu' asked for, but MXNet sees no GPU: install a CUDA build "
                         "(pip install mxnet-cu112==1.9.1) on a machine with one, or use "
                         "--device cpu")
    return mx.gpu(0) if device in ("gpu", "auto") and gpus else mx.cpu()


class Engine:
    """Loads weights once and reconstructs batches of windows.

    Args:
        weights: Weights stem or ``.params`` path.
        device: ``auto``, ``cpu`` or ``gpu``.
    """

    def __init__(self, weights: str | Path, device: str = "auto") -> None:
        self.ctx = pick_context(device)
        self.net, self.meta = load_weights(weights, self.ctx)
        self.calibration_arrays = load_calibration_arrays(weights, self.meta)
        self.net.hybridize(static_alloc=True)
        self.window = self.meta.window
        self.contract = self.meta.contract
        log.info("model %s (%s) on %s", weights, self.meta.model, self.ctx)

    def reconstruct(self, batch: np.ndarray) -> np.ndarray:
        """Reconstruct (N, T, S, S) windows; returns an array of the same shape."""
        return self.net(mx.nd.array(batch, ctx=self.ctx)).asnumpy()
