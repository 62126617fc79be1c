"""Batched inference of any model family's networks on the chosen device and backend
(a plug-in of :mod:`stream.detector.backends`: MXNet or onnxruntime), at the chosen
precision or the one the precision policy measures
(:mod:`stream.detector.backends.policy`)."""

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
from stream.detector.backends import get_backend
from stream.detector.backends.base import BatchedRunner
from stream.detector.backends.policy import AUTO_MIN_SPEEDUP, Decide, check_name, measure
from stream.detector.precision import calibration_windows, cpu_flags, isa_summary
from stream.detector.reuse import build_split

__all__ = ["DEVICES", "Engine", "get_backend", "pick_context"]

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
    the backend (:class:`stream.detector.backends.base.Backend`; MXNet: hybridized with
    static memory and, on a CPU, with oneDNN's operator fusion; onnxruntime: exported to
    ONNX) at ``precision`` (see :mod:`stream.detector.precision`). Callers write windows
    into :attr:`batch` and call :meth:`run`; the network reads that buffer in place (no
    copy on a CPU). With ``decode_last``, ``run(n, tail=True)`` outputs only each window's
    newest frames (what a live detector scores), skipping the decoder for the others where
    the family has such a network.

    ``precision="auto"`` measures at start-up (a few seconds, more for int8's
    calibration): fp32 and each reduced precision this CPU has instructions for, built
    and timed at ``max_batch`` on the network :meth:`run` uses most (the tail network if
    there is one), and the decisions of those measured faster, on normal calibration
    windows (:func:`stream.detector.backends.policy.measure`). :attr:`precision` is what
    it runs; :attr:`precision_report` what it measured:
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
            (:func:`stream.detector.backends.policy.scorer_decisions` of the scorer that will
            use them); ``auto`` takes a reduced precision only if these equal fp32's on
            every calibration window. None: its reconstructions must stay within
            :data:`stream.detector.backends.policy.RECON_TOLERANCE` of fp32's instead.
        backend: ``mxnet`` (the default) or ``onnxruntime``
            (:mod:`stream.detector.backends.onnxruntime_backend`: the same inference form
            exported to ONNX at start-up; fp32, int8 or auto, whose candidate there is int8).
        reuse: Also build the encoder-reuse networks where the family splits
            (:attr:`reuse`, on the backend, at the precision it runs), for a live detector.
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
                                 decode_last, self.backend, calibration, self.reconstruct,
                                 decide) if reuse else None
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
        """``auto``: the precision policy (:func:`stream.detector.backends.policy.measure`)
        on the network :meth:`run` uses most, at the full batch, on normal windows.

        Returns:
            The precision to run, the report (see :attr:`precision_report`) and the
            network already built at it.
        """
        flags = cpu_flags()
        hot, n = self.decode_last, len(self.batch)
        report = {"requested": "auto", "precision": "fp32", "isa": isa_summary(flags),
                  "candidates": list(self.backend.candidates(flags)), "batch": n,
                  "network": "tail" if hot != self.outputs else "full",
                  "frames_per_s": {}, "skipped": {}, "check": check_name(decide),
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

        chosen, runner = measure(build, tuple(report["candidates"]),
                                 tuple(self.backend.build_errors), windows, n, self.window,
                                 hot, decide, self.contract.pixel_scale, report)
        for p, first in report["skipped"].items():
            log.info("precision auto: %s could not build or run %s for this network on "
                     "this CPU, skipped: %s", self.backend.runtime, p, first)
        if report["frames_per_s"]:
            checked = ", ".join(f"{p} {k} of {report['checked_frames']}"
                                for p, k in report["changed"].items())
            log.info("precision auto, batch %d, %s network: frames/s %s; %s changed on %d "
                     "normal windows: %s; running %s", n, report["network"],
                     ", ".join(f"{p} {v:.1f}" for p, v in report["frames_per_s"].items()),
                     report["check"], len(windows),
                     checked or f"none checked (none {AUTO_MIN_SPEEDUP:g}x fp32)", chosen)
        return chosen, report, {hot: runner}

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


def _once(fn: Callable[[], np.ndarray]) -> Callable[[], np.ndarray]:
    """``fn``, evaluated on the first call only."""
    cache: list[np.ndarray] = []

    def call() -> np.ndarray:
        if not cache:
            cache.append(fn())
        return cache[0]
    return call
