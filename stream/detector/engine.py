"""Batched inference of any model family's networks on the chosen device and backend
(MXNet or onnxruntime), at the chosen or measured precision."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet.gluon import HybridBlock

from models.registry import get_family
from models.weights import WeightsMeta, load_calibration_arrays, load_weights
from stream.defaults import BACKENDS
from stream.detector.precision import (
    AUTO_MIN_SPEEDUP,
    AUTO_RUNS,
    RECON_TOLERANCE,
    Decide,
    auto_candidates,
    calibration_windows,
    convert_bf16,
    cpu_flags,
    isa_summary,
    pick_auto,
    quantize_int8,
    reconstruction_changed,
    resolve_precision,
)
from stream.detector.reuse import PRECISIONS as REUSE_PRECISIONS
from stream.detector.reuse import SplitNetwork, build_split, mxnet_network
from stream.detector.runner import BatchedRunner

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
    """Loads weights once and runs batches of windows through them, allocating nothing per
    call.

    The weights' family gives the networks (:meth:`models.family.ModelFamily.inference`:
    the STAE's inference form, the predictor, the autoencoders, the CAM classifier), run by
    the backend (MXNet: hybridized with static memory and, on a CPU, with oneDNN's operator
    fusion; onnxruntime: :mod:`stream.detector.onnx_backend`) at ``precision`` (see
    :mod:`stream.detector.precision`). Callers write windows into :attr:`batch` and call
    :meth:`run`; the network reads that buffer in place (no copy on a CPU). With
    ``decode_last``, ``run(n, tail=True)`` outputs only each window's newest frames (what a
    live detector scores), skipping the decoder for the others where the family has such a
    network.

    ``precision="auto"`` measures at start-up (a few seconds, more for int8's
    calibration): fp32 and each reduced precision this CPU has instructions for, built
    and timed at ``max_batch`` on the network :meth:`run` uses most (the tail network if
    there is one), and the decisions of those measured faster, on normal calibration
    windows. :attr:`precision` is what it runs; :attr:`precision_report` what it measured:
    ``requested`` and ``precision`` always; under ``auto`` on a CPU also ``isa``,
    ``candidates``, ``batch``, ``network`` (``tail`` or ``full``), ``frames_per_s`` (input
    frames per second of each precision that ran), ``skipped`` (candidates that could not
    run, with the backend's message), ``check`` (``decisions`` or the reconstruction
    tolerance), ``checked_frames``, ``changed`` (per checked candidate, the frames whose
    verdict or reconstruction differed from fp32's) and ``reason``.

    Args:
        weights: Weights stem or ``.params`` path.
        device: ``auto``, ``cpu`` or ``gpu``.
        precision: ``auto``, ``fp32``, ``bf16`` or ``int8``.
        max_batch: Most windows per call.
        int8_calibration: Folder of normal clips for int8 calibration and ``auto``'s
            check ("" : the clips the weights were trained on).
        decode_last: Frames a tail run reconstructs (None: no tail network).
        decide: Per-frame verdicts of reconstructed windows
            (:func:`stream.detector.precision.scorer_decisions` of the scorer that will
            use them); ``auto`` takes a reduced precision only if these equal fp32's on
            every calibration window. None: its reconstructions must stay within
            :data:`stream.detector.precision.RECON_TOLERANCE` of fp32's instead.
        backend: ``mxnet`` (the default) or ``onnxruntime``
            (:mod:`stream.detector.onnx_backend`: the same inference form exported to
            ONNX at start-up; fp32, int8 or auto, whose candidate there is int8).
        reuse: Also build the encoder-reuse networks where the family splits
            (:attr:`reuse`, on the backend, fp32 or MXNet's bf16), for a live detector.
    """

    def __init__(self, weights: str | Path, device: str = "auto", precision: str = "auto",
                 max_batch: int = 8, int8_calibration: str = "",
                 decode_last: int | None = None, decide: Decide | None = None,
                 backend: str = "mxnet", reuse: bool = False) -> None:
        self.backend = get_backend(backend)
        self.ctx = pick_context(device)
        trained, self.meta = load_weights(weights, self.ctx)
        self.calibration_arrays = load_calibration_arrays(weights, self.meta)
        self.family = get_family(self.meta.model)
        self.window = self.meta.window     # whether the family can score it: the caller's
        self.contract = self.meta.contract
        self.requested_precision = precision
        resolved = self.backend.resolve(precision, self.ctx)
        # Two input buffers: a caller fills one while the network reads the other.
        self.batches = [np.zeros((max_batch, self.window, *self.contract.shape), np.float32)
                        for _ in range(2)]
        self.batch = self.batches[0]
        self.busy_s = 0.0       # time spent in run() and the frames it put through the
        self.frames_run = 0     # network, so a status can tell inference from the rest
        calibration = _once(lambda: calibration_windows(self.meta, int8_calibration))

        def forms() -> dict[int, HybridBlock]:
            """A fresh copy of the networks (each precision converts its own), keyed by the
            frames each outputs: the full one and, where the family has one, the tail."""
            return self.family.inference(trained, self.meta, self.ctx, decode_last)

        initial = forms()
        shapes = sorted(initial, reverse=True)
        self.outputs = shapes[0]            # frames the full network outputs per window
        self.decode_last = shapes[-1]

        built: dict[int, BatchedRunner] = {}
        if resolved == "auto":
            resolved, self.precision_report, built = self._measure(forms, calibration,
                                                                   decide)
        else:
            self.precision_report = {"requested": precision, "precision": resolved}
            if precision == "auto":
                self.precision_report["reason"] = (
                    "reduced precisions are oneDNN's, CPU only"
                    if self.ctx.device_type != "cpu" else f"this CPU "
                    f"({isa_summary(cpu_flags())}) has {self.backend.candidate_isa}: "
                    "nothing to measure")
        self.precision = resolved
        missing = [k for k in shapes if k not in built]
        made = initial if missing else {}
        for frames in missing:
            built[frames] = self.backend.runner(made[frames], self.meta, self.ctx, resolved,
                                                self.batches, self._shape(frames),
                                                calibration)
        self._nets = {k: built[k] for k in shapes}
        self.net = self._nets[self.outputs].net
        self.batch[:] = 0
        for frames in self._nets:   # build the graphs and their static memory now
            self.run(1, tail=frames != self.outputs)
        #: The encoder-reuse networks (:mod:`stream.detector.reuse`), built by the
        #: backend; None: whole only.
        self.reuse = build_split(self.family, trained, self.meta, self.ctx, resolved,
                                 max_batch, {k: self._shape(k) for k in shapes},
                                 decode_last, self.backend) if reuse else None
        self.busy_s, self.frames_run = 0.0, 0
        reason = self.precision_report.get("reason")
        log.info("model %s (%s) on %s with %s, precision %s%s", weights, self.meta.model,
                 self.ctx, self.backend.name, self.precision,
                 f" (auto: {reason})" if precision == "auto" else "")

    def _shape(self, frames: int) -> tuple[int, ...]:
        """One window's output shape from the network that outputs ``frames`` frames."""
        return self.family.output_shape(self.meta, frames)

    def _measure(self, forms: Callable[[], dict[int, HybridBlock]],
                 calibration: Callable[[], np.ndarray], decide: Decide | None
                 ) -> tuple[str, dict, dict[int, BatchedRunner]]:
        """``auto``: time fp32 and each of the backend's candidates, check the decisions
        of those faster; the same rule for every backend.

        Returns:
            The precision to run, the report (see :attr:`precision_report`) and the
            network already built at it.
        """
        flags = cpu_flags()
        hot, n = self.decode_last, len(self.batch)
        report = {"requested": "auto", "precision": "fp32", "isa": isa_summary(flags),
                  "candidates": list(self.backend.candidates(flags)), "batch": n,
                  "network": "tail" if hot != self.outputs else "full",
                  "frames_per_s": {}, "skipped": {},
                  "check": "decisions" if decide is not None else
                  f"reconstructions within {RECON_TOLERANCE:g} grey level per 4x4 window",
                  "checked_frames": 0, "changed": {}}
        try:
            windows = calibration()
        except FileNotFoundError as err:
            report["reason"] = f"no normal windows to check a reduced precision on: {err}"
            log.warning("precision auto: %s; running fp32", report["reason"])
            return "fp32", report, {}
        self.batch[:] = windows[np.arange(n) % len(windows)]

        def build(precision: str) -> BatchedRunner:
            runner = self.backend.runner(forms()[hot], self.meta, self.ctx, precision,
                                         self.batches, self._shape(hot), calibration)
            runner.run(n)   # warm-up: the graph at this batch and its memory
            return runner

        runners = {"fp32": build("fp32")}
        for p in report["candidates"]:
            try:
                runners[p] = build(p)
            # e.g. oneDNN's "could not create a primitive", or an assert in MXNet's AMP:
            # the candidate cannot run here, and fp32 always can
            except self.backend.build_errors as err:
                first = (str(err).strip().splitlines() or [type(err).__name__])[0]
                report["skipped"][p] = first
                log.info("precision auto: %s could not build or run %s for this "
                         "network on this CPU, skipped: %s", self.backend.runtime, p, first)
        if len(runners) == 1:
            report["reason"] = "no candidate could run on this CPU"
            return "fp32", report, {hot: runners["fp32"]}
        fps = _best_fps(runners, n, self.window, AUTO_RUNS)
        report["frames_per_s"] = {p: round(v, 1) for p, v in fps.items()}
        target = windows[:, self.window - hot:]   # the frames the network reconstructs
        reference = verdicts = None
        for p in sorted(runners, key=fps.get, reverse=True):
            if p == "fp32" or fps[p] < AUTO_MIN_SPEEDUP * fps["fp32"]:
                continue
            if reference is None:
                reference = runners["fp32"].reconstruct(windows)
                verdicts = None if decide is None else decide(reference, target)
            recon = runners[p].reconstruct(windows)
            changed = reconstruction_changed(recon, reference, self.contract.pixel_scale) \
                if decide is None else decide(recon, target) != verdicts
            report["checked_frames"] = int(changed.size)
            report["changed"][p] = int(changed.sum())
            if not changed.any():
                break   # the fastest that decides as fp32: slower ones need no check
        chosen = pick_auto(fps, report["changed"])
        report["precision"] = chosen
        report["reason"] = _auto_reason(chosen, fps, report)
        checked = ", ".join(f"{p} {k} of {report['checked_frames']}"
                            for p, k in report["changed"].items())
        log.info("precision auto, batch %d, %s network: frames/s %s; %s changed on %d normal "
                 "windows: %s; running %s", n, report["network"],
                 ", ".join(f"{p} {v:.1f}" for p, v in report["frames_per_s"].items()),
                 report["check"], len(windows),
                 checked or f"none checked (none {AUTO_MIN_SPEEDUP:g}x fp32)", chosen)
        return chosen, report, {hot: runners[chosen]}

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
        """The full network's outputs of any number of (N, T, S, S) windows; a new array."""
        return self._nets[self.outputs].reconstruct(windows)


class MXNetBackend:
    """Runs the inference form with MXNet (oneDNN-fused on a CPU), at any precision
    :mod:`stream.detector.precision` offers; ``auto`` is measured by the engine."""

    name = "mxnet"
    #: Who builds and runs its networks (for the engine's log lines).
    runtime = "oneDNN"
    #: What a CPU lacks when ``auto`` has no candidate to measure.
    candidate_isa = "neither VNNI nor native bf16"
    #: Errors that mean a candidate cannot be built or run here: oneDNN's "could not
    #: create a primitive", or an assert in MXNet's AMP.
    build_errors = (mx.base.MXNetError, AssertionError)
    #: Precisions it runs encoder reuse at (:mod:`stream.detector.reuse`).
    reuse_precisions = REUSE_PRECISIONS

    def resolve(self, precision: str, ctx: mx.Context) -> str:
        """:func:`stream.detector.precision.resolve_precision`."""
        return resolve_precision(precision, ctx)

    def candidates(self, flags: frozenset[str] | None = None) -> tuple[str, ...]:
        """:func:`stream.detector.precision.auto_candidates`: int8 and bf16."""
        return auto_candidates(flags)

    def split_network(self, net: HybridBlock, inputs: list[list[np.ndarray]],
                      outputs: list[list[np.ndarray]], ctx: mx.Context, precision: str
                      ) -> SplitNetwork:
        """:func:`stream.detector.reuse.mxnet_network`."""
        return mxnet_network(net, inputs, outputs, ctx, precision)

    def runner(self, net: HybridBlock, meta: WeightsMeta, ctx: mx.Context, precision: str,
               batches: list[np.ndarray], shape: tuple[int, ...],
               calibration: Callable[[], np.ndarray]) -> _Runner:
        """``net`` built at ``precision`` (:func:`build_network`) over ``batches``."""
        return _Runner(build_network(net, ctx, precision, batches[0][:1], calibration),
                       batches, shape, ctx)


def get_backend(name: str):
    """The backend ``name`` (one of :data:`BACKENDS`); onnxruntime is imported only when
    asked for.

    Raises:
        ValueError: For an unknown name, listing the valid ones.
    """
    if name == "mxnet":
        return MXNetBackend()
    if name == "onnxruntime":
        from stream.detector.onnx_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend()
    raise ValueError(f"backend {name!r} is not one of {list(BACKENDS)}")


class _Runner(BatchedRunner):
    """One hybridized network over the engine's input buffer and its own output buffer."""

    def __init__(self, net: HybridBlock, batches: list[np.ndarray], shape: tuple[int, ...],
                 ctx: mx.Context) -> None:
        self.net = net
        self.batches = batches
        self.outputs = [np.zeros((len(batches[0]), *shape), np.float32) for _ in batches]
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



def _best_fps(runners: dict[str, BatchedRunner], n: int, window: int, runs: int
              ) -> dict[str, float]:
    """Frames (``n`` windows of ``window`` frames) per second of each runner: the best of
    ``runs`` calls, the runners taking turns so that a change of load hits all alike."""
    best = dict.fromkeys(runners, math.inf)
    for _ in range(runs):
        for name, runner in runners.items():
            started = time.perf_counter()
            runner.run(n)
            best[name] = min(best[name], time.perf_counter() - started)
    return {name: n * window / seconds for name, seconds in best.items()}


def _auto_reason(chosen: str, fps: dict[str, float], report: dict) -> str:
    """Why ``auto`` runs ``chosen``, in a few words."""
    if chosen != "fp32":
        return (f"{chosen} measured {fps[chosen] / fps['fp32']:.2f}x fp32 and changed none "
                f"of {report['checked_frames']} {report['check']} on normal windows")
    if report["changed"]:
        return ("no candidate at least " f"{AUTO_MIN_SPEEDUP:g}x fp32 kept fp32's "
                f"{report['check']}: changed " + ", ".join(
                    f"{p} {k} of {report['checked_frames']}"
                    for p, k in report["changed"].items()))
    return "no candidate measured at least " + f"{AUTO_MIN_SPEEDUP:g}x fp32 (" + ", ".join(
        f"{p} {v / fps['fp32']:.2f}x" for p, v in fps.items() if p != "fp32") + ")"


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
