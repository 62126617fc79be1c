"""The onnxruntime backend: the family's inference form exported to ONNX at
start-up (:mod:`models.export`, in memory, a second or less) and run by an onnxruntime
session that reads the engine's input buffers and writes its output buffers in place.

Precision: ``fp32``, ``int8`` (the export quantised statically at start-up, calibrated on
normal training windows: :mod:`stream.detector.onnx_int8`) and ``auto`` (int8 where the
CPU has VNNI or AMX-int8, taken only if measured faster than fp32 and deciding as fp32, as
for MXNet: :mod:`stream.detector.backends.policy`). ``bf16`` is refused: onnxruntime's CPU
provider has no bfloat16 convolution (MXNet's oneDNN has: ``detector.backend: mxnet``).

Encoder reuse (:mod:`stream.detector.reuse`): a split's encoder and temporal networks,
exported alike (several inputs and outputs), each run by its own session over the
:class:`~stream.detector.reuse.SplitRunner`'s buffers (:class:`OnnxNetwork`), at fp32 or
int8 (each network quantised on its own normal inputs:
:func:`stream.detector.reuse.split_calibration`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import mxnet as mx
import numpy as np
from mxnet.gluon import HybridBlock

from models.export import INPUT, ExportError, inference_onnx, input_names, network_to_onnx
from models.weights import WeightsMeta
from stream.defaults import PRECISIONS
from stream.detector import precision as precisions
from stream.detector.backends.base import (
    BatchedRunner,
    calibration_sample,
    check_int8_outputs,
    check_outputs,
    network_outputs,
    random_sample,
)
from stream.detector.config import ONNX_BF16_REFUSED
from stream.detector.onnx_int8 import QuantizationError, quantize_int8

#: How far an exported split network's outputs may be from MXNet's on random inputs at
#: its build (fp32 both, sums ordered differently; measured up to 2e-5).
SPLIT_TOLERANCE = 1e-4


def session_options(threads: int | None = None, spin: bool = True):
    """onnxruntime's defaults, with ``threads`` intra-op threads where given (0 or None:
    onnxruntime's own choice, one per physical core); ``spin=False``: its idle threads
    wait without spinning."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def onnx_session(model: bytes, threads: int | None = None, spin: bool = True):
    """An onnxruntime CPU session of a serialised ONNX model (options as
    :func:`session_options`)."""
    import onnxruntime as ort

    return ort.InferenceSession(model, session_options(threads, spin),
                                providers=["CPUExecutionProvider"])


class OnnxRuntimeBackend:
    """Runs the inference form with onnxruntime on the CPU, at fp32 or int8.

    Its sessions take as many intra-op threads as ``OMP_NUM_THREADS`` gives MXNet
    (``vadstream`` sets it to the available cores; unset: onnxruntime's default), so the
    two backends compare on the same cores.
    """

    name = "onnxruntime"
    runtime = "onnxruntime"
    precisions = ("fp32", "int8")
    candidate_isa = "neither VNNI nor AMX-int8 (int8 is onnxruntime's reduced precision)"
    reuse_precisions = ("fp32", "int8")

    def resolve(self, precision: str, ctx: mx.Context) -> str:
        """The precision to run: ``fp32``, ``int8``, or ``auto`` where there is a candidate
        to measure (:meth:`candidates`; else ``fp32``).

        Raises:
            ValueError: For a GPU context, an unknown precision or ``bf16``, saying what
                to use.
        """
        if ctx.device_type != "cpu":
            raise ValueError("backend onnxruntime runs on the CPU (the onnxruntime package "
                             "installed has no GPU provider): use device cpu, or backend "
                             "mxnet on the GPU")
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r} is not one of "
                             f"{list(PRECISIONS)}")
        if precision == "bf16":
            raise ValueError(ONNX_BF16_REFUSED)
        if precision == "auto":
            return "auto" if self.candidates() else "fp32"
        return precision

    def candidates(self, flags: frozenset[str] | None = None) -> tuple[str, ...]:
        """What ``auto`` times against fp32: int8 where the CPU has VNNI or AMX-int8
        (:func:`stream.detector.precision.auto_candidates`, less bf16)."""
        return tuple(p for p in precisions.auto_candidates(flags) if p == "int8")

    @property
    def build_errors(self) -> tuple[type[Exception], ...]:
        """onnxruntime's errors that mean a candidate cannot be built or run here, and the
        quantisation's (:class:`stream.detector.onnx_int8.QuantizationError`)."""
        from onnxruntime.capi import onnxruntime_pybind11_state as state

        return (state.Fail, state.InvalidArgument, state.InvalidGraph, state.NotImplemented,
                state.RuntimeException, QuantizationError)

    def supports_reuse(self, precision: str) -> bool:
        return precision in self.reuse_precisions

    def runner(self, net: HybridBlock, meta: WeightsMeta, ctx: mx.Context, precision: str,
               batches: list[np.ndarray], shape: tuple[int, ...],
               calibration: Callable[[], np.ndarray]) -> OnnxRunner:
        """A session of ``net`` exported to ONNX (quantised for ``int8``: calibrated on
        ``calibration()``), over ``batches``.

        Raises:
            ExportError: If the network cannot be exported (naming the op).
        """
        try:
            model = inference_onnx(net, meta)
        except ExportError as err:
            raise ExportError(f"backend onnxruntime: {meta.model}: {err}; use backend "
                              "mxnet") from err
        data = quantize_int8(model, calibration()) if precision == "int8" \
            else model.SerializeToString()
        return OnnxRunner(onnx_session(data, _threads()), batches, shape)

    def split_network(self, net: HybridBlock, inputs: list[list[np.ndarray]],
                      outputs: list[list[np.ndarray]], ctx: mx.Context, precision: str,
                      calibration: list[np.ndarray] | None = None,
                      keep_fp32: Sequence[str] = ()) -> OnnxNetwork:
        """A split's network (:mod:`stream.detector.reuse`) exported to ONNX (int8: its
        convolutions quantised, calibrated on ``calibration``, all of them as for the
        whole network: ``keep_fp32`` is MXNet's), in a session over the buffers (its
        threads not spinning), checked against MXNet's outputs: on random inputs (fp32),
        on its first normal samples (int8, within
        :data:`~stream.detector.backends.base.INT8_BUILD_TOLERANCE`).

        Raises:
            ValueError: For a precision it runs no split at, or int8 without calibration.
            ExportError: If the network cannot be exported (naming the op).
            QuantizationError: If int8 cannot quantise it.
            RuntimeError: If the session's outputs differ from MXNet's
                (:class:`~stream.detector.backends.base.Int8SplitError` at int8).
        """
        if not self.supports_reuse(precision):
            raise ValueError(f"backend onnxruntime runs encoder reuse at "
                             f"{' or '.join(self.reuse_precisions)}, not {precision}; set "
                             "detector.encoder_reuse: false")
        if precision == "int8" and calibration is None:
            raise ValueError("encoder reuse at int8 needs calibration samples")
        what = type(net).__name__
        shapes = [(1, *a.shape[1:]) for a in inputs[0]]
        sample = random_sample(shapes, ctx) if precision == "fp32" else \
            calibration_sample(calibration, 2, ctx)
        reference = network_outputs(net, sample)
        try:
            model = network_to_onnx(net, *shapes)
        except ExportError as err:
            raise ExportError(f"backend onnxruntime, encoder reuse: {what}: {err}; set "
                              "detector.encoder_reuse: false or use backend mxnet") from err
        # A job runs the encoder's session, then the temporal one: a session's threads
        # spinning after its run would take the cores the next one needs (measured at
        # 2 threads on 2 cores, the STAE at stride 5, batch 4: reuse 118 scored frames/s
        # spinning, 163 not).
        names = input_names(len(shapes))
        data = model.SerializeToString() if precision == "fp32" else quantize_int8(
            model, dict(zip(names, calibration, strict=True)))
        session = onnx_session(data, _threads(), spin=False)
        got = session.run(None, {k: x.asnumpy() for k, x in zip(names, sample, strict=True)})
        hint = "the export reorders or mistranslates an input or output"
        if precision == "fp32":
            check_outputs(f"{what} exported to ONNX", got, reference, SPLIT_TOLERANCE, hint)
        else:
            check_int8_outputs(f"{what} exported to ONNX", got, reference, hint)
        return OnnxNetwork(session, inputs, outputs)


def _threads() -> int:
    """Intra-op threads of the sessions: ``OMP_NUM_THREADS`` (0: onnxruntime's choice)."""
    return int(os.environ.get("OMP_NUM_THREADS", "0") or 0)


class OnnxNetwork:
    """A session over fixed buffers, per slot one per input and one per output, in the
    order of the graph's inputs (:func:`models.export.input_names`) and outputs, bound in
    place (:class:`stream.detector.backends.base.SplitNetwork`).

    Args:
        session: The session.
        inputs: Per slot, the input buffers, (max rows, ...) each.
        outputs: Per slot, the output buffers.
    """

    def __init__(self, session, inputs: list[list[np.ndarray]],
                 outputs: list[list[np.ndarray]]) -> None:
        self.session, self.inputs, self.outputs = session, inputs, outputs
        self._inputs = [i.name for i in session.get_inputs()]
        self._outputs = [o.name for o in session.get_outputs()]
        for kind, names, buffers in (("inputs", self._inputs, inputs[0]),
                                     ("outputs", self._outputs, outputs[0])):
            if len(names) != len(buffers):
                raise ValueError(f"the session has {len(names)} {kind}, the buffers "
                                 f"{len(buffers)}; give one buffer per {kind[:-1]}")
        rows = {len(a) for slot in (*inputs, *outputs) for a in slot}
        if len(rows) != 1:
            raise ValueError(f"the buffers hold {sorted(rows)} rows: every input and output "
                             "buffer needs the same rows (run binds n rows of each)")
        self._bindings: dict[tuple[int, int], object] = {}

    def _binding(self, slot: int, n: int):
        if (slot, n) not in self._bindings:
            binding = self.session.io_binding()
            for name, a in zip(self._inputs, self.inputs[slot], strict=True):
                binding.bind_input(name, "cpu", 0, np.float32, [n, *a.shape[1:]],
                                   a.ctypes.data)
            for name, a in zip(self._outputs, self.outputs[slot], strict=True):
                binding.bind_output(name, "cpu", 0, np.float32, [n, *a.shape[1:]],
                                    a.ctypes.data)
            self._bindings[slot, n] = binding
        return self._bindings[slot, n]

    def run(self, n: int, slot: int) -> list[np.ndarray]:
        """Run on the first ``n`` rows of the slot's inputs; views of its outputs.

        Raises:
            ValueError: If ``n`` is not 1..the buffers' rows (onnxruntime would write
                past them).
        """
        rows = len(self.inputs[slot][0])
        if not 1 <= n <= rows:
            raise ValueError(f"{n} rows: the network's buffers hold 1..{rows}")
        self.session.run_with_iobinding(self._binding(slot, n))
        return [a[:n] for a in self.outputs[slot]]


class OnnxRunner(BatchedRunner):
    """One onnxruntime session over the engine's input buffers and its own output buffers
    (bound in place: no copy either way).

    Args:
        session: The session (one float32 input named :data:`models.export.INPUT`).
        batches: The engine's input buffers, (max_batch, T, ...) each.
        shape: One window's output shape.
    """

    def __init__(self, session, batches: list[np.ndarray], shape: tuple[int, ...]) -> None:
        self.session = session
        self.batches = batches
        self.outputs = [np.zeros((len(batches[0]), *shape), np.float32) for _ in batches]
        self._output = session.get_outputs()[0].name
        self._bindings: dict[tuple[int, int], object] = {}
        #: What :func:`train.offline.score_clip` calls: windows (an NDArray) in, output out.
        self.net = self._call

    def _binding(self, slot: int, n: int):
        if (slot, n) not in self._bindings:
            source, target = self.batches[slot][:n], self.outputs[slot][:n]
            binding = self.session.io_binding()
            binding.bind_input(INPUT, "cpu", 0, np.float32, list(source.shape),
                               source.ctypes.data)
            binding.bind_output(self._output, "cpu", 0, np.float32, list(target.shape),
                                target.ctypes.data)
            self._bindings[slot, n] = binding
        return self._bindings[slot, n]

    def run(self, n: int, slot: int = 0) -> np.ndarray:
        """The outputs of the first ``n`` windows of ``batches[slot]``: a view of the slot's
        output buffer, valid until the next call on that slot."""
        self.session.run_with_iobinding(self._binding(slot, n))
        return self.outputs[slot][:n]

    def _call(self, x: mx.nd.NDArray) -> mx.nd.NDArray:
        data = np.ascontiguousarray(x.asnumpy(), np.float32)
        return mx.nd.array(self.session.run([self._output], {INPUT: data})[0])
