"""Batched inference of the autoencoder on the chosen MXNet device."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet.gluon import HybridBlock

from models.registry import get_family
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
        self.family = get_family(self.meta.model)
        self.temporal = self.family.temporal(self.meta)
        self.window = self.temporal.window
        self.contract = self.meta.contract
        self.requested_precision = precision
        self.precision = resolve_precision(precision, self.ctx)
        # Two input buffers: a caller fills one while the network reads the other.
        self.batches = [np.zeros((max_batch, self.window, *self.contract.shape), np.float32)
                        for _ in range(2)]
        self.batch = self.batches[0]
        self.busy_s = 0.0       # time spent in run() and the frames it put through the
        self.frames_run = 0     # network, so a status can tell inference from the rest
        calibration = _once(lambda: calibration_windows(self.meta, int8_calibration))
        forms = self.family.inference(trained, self.meta, self.ctx, decode_last)
        self._nets = {}
        for frames, form in sorted(forms.items(), reverse=True):
            self._nets[frames] = _Runner(
                build_network(form, self.ctx, self.precision, self.batch[:1], calibration),
                self.batches, frames, self.ctx)
        self.outputs = max(self._nets)      # frames the full network outputs per window
        self.net = self._nets[self.outputs].net
        self.decode_last = min(self._nets)
        for frames in self._nets:   # build the graphs and their static memory now
            self.run(1, tail=frames != self.outputs)
        self.busy_s, self.frames_run = 0.0, 0
        log.info("model %s (%s) on %s, precision %s%s", weights, self.meta.model, self.ctx,
                 self.precision, f" (auto; CPU: {isa_summary(cpu_flags())})"
                 if precision == "auto" and self.ctx.device_type == "cpu" else "")

    def run(self, n: int, tail: bool = False, slot: int = 0) -> np.ndarray:
        """Run the network on the first ``n`` windows of ``batches[slot]``.

        Args:
            n: Windows.
            tail: Output only the newest :attr:`decode_last` frames of each.
            slot: Which input buffer (0 is :attr:`batch`); each has its own output
                buffer, so one slot's output stays valid while the other runs.

        Returns:
            (n, outputs or decode_last, ...) view of the slot's output buffer, valid
            until the next call on that slot. Output frame j is the window's frame
            ``T - len + j``: outputs cover a window's newest frames.
        """
        if not 1 <= n <= len(self.batch):
            raise ValueError(f"batch of {n} windows: the engine takes 1..{len(self.batch)}")
        started = time.perf_counter()
        out = self._nets[self.decode_last if tail else self.outputs].run(n, slot)
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

    def __init__(self, net: HybridBlock, batches: list[np.ndarray], frames: int,
                 ctx: mx.Context) -> None:
        self.net = net
        self.batches = batches
        shape = batches[0].shape
        self.outputs = [np.zeros((shape[0], frames, *shape[2:]), np.float32) for _ in batches]
        self.ctx = ctx
        self._views: dict[tuple[int, int], tuple[mx.nd.NDArray, mx.nd.NDArray]] = {}

    def run(self, n: int, slot: int = 0) -> np.ndarray:
        if (slot, n) not in self._views:
            # NDArrays over the first n windows of the NumPy buffers, sharing their memory
            self._views[slot, n] = (
                mx.nd.from_numpy(self.batches[slot][:n], zero_copy=True),
                mx.nd.from_numpy(self.outputs[slot][:n], zero_copy=True))
        source, target = self._views[slot, n]
        y = self.net(source.as_in_context(self.ctx) if self.ctx.device_type != "cpu"
                     else source)
        if y.dtype != np.float32:
            y = y.astype(np.float32)
        y.copyto(target)
        target.wait_to_read()
        return self.outputs[slot][:n]


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
