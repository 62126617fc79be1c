"""The engine's onnxruntime backend: the family's inference form exported to ONNX at
start-up (:mod:`models.export`, in memory, a second or less) and run by an onnxruntime
session that reads the engine's input buffers and writes its output buffers in place.

Precision: fp32 only. ``auto`` runs fp32; ``bf16`` and ``int8`` are refused: they are
MXNet oneDNN's paths (``detector.backend: mxnet``), and onnxruntime's own int8 (dynamic
quantisation of the convolutions to ``ConvInteger``) was not measured to pay here.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import mxnet as mx
import numpy as np
from mxnet.gluon import HybridBlock

from models.export import INPUT, ExportError, inference_onnx
from models.weights import WeightsMeta
from stream.detector.engine import BatchedRunner


def session_options(threads: int | None = None):
    """onnxruntime's defaults, with ``threads`` intra-op threads where given (0 or None:
    onnxruntime's own choice, one per physical core)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return options


def onnx_session(model: bytes, threads: int | None = None):
    """An onnxruntime CPU session of a serialised ONNX model."""
    import onnxruntime as ort

    return ort.InferenceSession(model, session_options(threads),
                                providers=["CPUExecutionProvider"])


class OnnxRuntimeBackend:
    """Runs the inference form with onnxruntime on the CPU, at fp32.

    Its sessions take as many intra-op threads as ``OMP_NUM_THREADS`` gives MXNet
    (``vadstream`` sets it to the available cores; unset: onnxruntime's default), so the
    two backends compare on the same cores.
    """

    name = "onnxruntime"

    def resolve(self, precision: str, ctx: mx.Context) -> str:
        """The precision to run: fp32 (``auto`` and ``fp32``).

        Raises:
            ValueError: For a GPU context, or ``bf16``/``int8``, saying what to use.
        """
        if ctx.device_type != "cpu":
            raise ValueError("backend onnxruntime runs on the CPU (the onnxruntime package "
                             "installed has no GPU provider): use device cpu, or backend "
                             "mxnet on the GPU")
        if precision in ("bf16", "int8"):
            raise ValueError(f"precision {precision} is MXNet oneDNN's: backend onnxruntime "
                             "runs fp32 (precision fp32 or auto); use backend mxnet for "
                             f"{precision}")
        return "fp32"

    def runner(self, net: HybridBlock, meta: WeightsMeta, ctx: mx.Context, precision: str,
               batches: list[np.ndarray], shape: tuple[int, ...],
               calibration: Callable[[], np.ndarray]) -> OnnxRunner:
        """A session of ``net`` exported to ONNX, over ``batches``.

        Raises:
            ExportError: If the network cannot be exported (naming the op).
        """
        try:
            model = inference_onnx(net, meta)
        except ExportError as err:
            raise ExportError(f"backend onnxruntime: {meta.model}: {err}; use backend "
                              "mxnet") from err
        threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
        return OnnxRunner(onnx_session(model.SerializeToString(), threads), batches, shape)


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
