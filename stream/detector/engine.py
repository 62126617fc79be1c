"""Batched inference of the autoencoder on the chosen MXNet device."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet.gluon import HybridBlock

from models.stae.inference import InferenceSTAE, inference_form
from models.stae.network import STAE
from models.weights import load_calibration_arrays, load_weights
from stream.detector.precision import (
    calibration_windows,
    convert_bf16,
    cpu_flags,
    isa_summary,
    quantize_int8,
    resolve_precision,
)

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
    """Loads weights once and reconstructs batches of windows, allocating nothing per call.

    The STAE runs in its inference form (:mod:`models.stae.inference`), hybridized with static
    memory and, on a CPU, with oneDNN's operator fusion; at ``precision`` (see
    :mod:`stream.detector.precision`). Callers write windows into :attr:`batch` and call
    :meth:`run`; the network reads that buffer in place (no copy on a CPU). With
    ``decode_last``, ``run(n, tail=True)`` reconstructs only each window's newest frames
    (what a live detector scores), skipping the decoder for the others.

    Args:
        weights: Weights stem or ``.params`` path.
        device: ``auto``, ``cpu`` or ``gpu``.
        precision: ``auto``, ``fp32``, ``bf16`` or ``int8``.
        max_batch: Most windows per call.
        int8_calibration: Folder of normal clips for int8 calibration ("" : the clips
            the weights were trained on).
        decode_last: Frames a tail run reconstructs (None: no tail network).
    """

    def __init__(self, weights: str | Path, device: str = "auto", precision: str = "auto",
                 max_batch: int = 8, int8_calibration: str = "",
                 decode_last: int | None = None) -> None:
        self.ctx = pick_context(device)
        trained, self.meta = load_weights(weights, self.ctx)
        self.calibration_arrays = load_calibration_arrays(weights, self.meta)
        self.window = self.meta.window
        self.contract = self.meta.contract
        self.requested_precision = precision
        self.precision = resolve_precision(precision, self.ctx)
        size = self.contract.size
        self.batch = np.zeros((max_batch, self.window, size, size), np.float32)
        self.busy_s = 0.0       # time spent in run() and the frames it put through the
        self.frames_run = 0     # network, so a status can tell inference from the rest
        calibration = _once(lambda: calibration_windows(self.meta, int8_calibration))
        full = inference_form(trained, self.ctx) if isinstance(trained, STAE) else trained
        tails = [decode_last] if decode_last and decode_last < self.window and \
            isinstance(full, InferenceSTAE) else []
        forms = {self.window: full} | {k: full.tail(k) for k in tails}
        self._nets = {}
        for frames, form in forms.items():
            self._nets[frames] = _Runner(
                build_network(form, self.ctx, self.precision, self.batch[:1], calibration),
                self.batch, frames, self.ctx)
        self.net = self._nets[self.window].net
        self.decode_last = tails[0] if tails else self.window
        for frames in self._nets:   # build the graphs and their static memory now
            self.run(1, tail=frames != self.window)
        self.busy_s, self.frames_run = 0.0, 0
        log.info("model %s (%s) on %s, precision %s%s", weights, self.meta.model, self.ctx,
                 self.precision, f" (auto; CPU: {isa_summary(cpu_flags())})"
                 if precision == "auto" and self.ctx.device_type == "cpu" else "")

    def run(self, n: int, tail: bool = False) -> np.ndarray:
        """Reconstruct the first ``n`` windows of :attr:`batch`.

        Args:
            n: Windows.
            tail: Reconstruct only the newest :attr:`decode_last` frames of each.

        Returns:
            (n, T or decode_last, S, S) view of an output buffer, valid until the next
            call.
        """
        if not 1 <= n <= len(self.batch):
            raise ValueError(f"batch of {n} windows: the engine takes 1..{len(self.batch)}")
        started = time.perf_counter()
        out = self._nets[self.decode_last if tail else self.window].run(n)
        self.busy_s += time.perf_counter() - started
        self.frames_run += n * self.window
        return out

    def reconstruct(self, windows: np.ndarray) -> np.ndarray:
        """Reconstruct any number of (N, T, S, S) windows; returns a new array."""
        out = np.empty_like(windows, dtype=np.float32)
        step = len(self.batch)
        for i in range(0, len(windows), step):
            n = min(step, len(windows) - i)
            self.batch[:n] = windows[i:i + n]
            out[i:i + n] = self.run(n)
        return out


class _Runner:
    """One hybridized network over the engine's input buffer and its own output buffer."""

    def __init__(self, net: HybridBlock, batch: np.ndarray, frames: int,
                 ctx: mx.Context) -> None:
        self.net = net
        self.batch = batch
        self.output = np.zeros((len(batch), frames, *batch.shape[2:]), np.float32)
        self.ctx = ctx
        self._views: dict[int, tuple[mx.nd.NDArray, mx.nd.NDArray]] = {}

    def run(self, n: int) -> np.ndarray:
        if n not in self._views:
            # NDArrays over the first n windows of the NumPy buffers, sharing their memory
            self._views[n] = (mx.nd.from_numpy(self.batch[:n], zero_copy=True),
                              mx.nd.from_numpy(self.output[:n], zero_copy=True))
        source, target = self._views[n]
        y = self.net(source.as_in_context(self.ctx) if self.ctx.device_type != "cpu"
                     else source)
        if y.dtype != np.float32:
            y = y.astype(np.float32)
        y.copyto(target)
        target.wait_to_read()
        return self.output[:n]


def _once(fn: Callable[[], np.ndarray]) -> Callable[[], np.ndarray]:
    """``fn``, evaluated on the first call only."""
    cache: list[np.ndarray] = []

    def call() -> np.ndarray:
        if not cache:
            cache.append(fn())
        return cache[0]
    return call


def build_network(net: HybridBlock, ctx: mx.Context, precision: str, sample: np.ndarray,
                  calibration: Callable[[], np.ndarray]) -> HybridBlock:
    """The network to run at ``precision``, hybridized (on a CPU, oneDNN-fused).

    Args:
        net: The network (the STAE's inference form, not yet hybridized).
        ctx: Where it runs.
        precision: ``fp32``, ``bf16`` or ``int8`` (already resolved).
        sample: One input batch, (1, T, S, S).
        calibration: Returns normal windows for int8 calibration (called only for int8).
    """
    x = mx.nd.array(sample, ctx=ctx)
    if precision == "int8":
        return quantize_int8(net, calibration())
    if precision == "bf16":
        return convert_bf16(net, x, ctx)
    net.hybridize(static_alloc=True, static_shape=True)
    if ctx.device_type == "cpu":
        # oneDNN fusion: each convolution with its activation (and the ConvLSTM's sum)
        net.optimize_for(x, backend="MKLDNN", static_alloc=True, static_shape=True)
    return net
