"""int8 for the onnxruntime backend: the exported inference form quantised statically at
start-up (onnxruntime's ``quantize_static``), calibrated on normal training windows.

Every convolution runs in int8 (``QLinearConv``, the QOperator form): weights int8 per
output channel, activations uint8 with ranges from the min and max the calibration
windows reach; the rest (the ConvLSTMs' gates, the decoder's transposed convolution and
the phase interleave's reshapes) stays fp32. Chosen on the shipped STAE on normal
*training* windows only (44 windows of Ped2 Train015/016 and mid-clip windows of
Train001-014, none of them calibration windows; the detector's ``motion`` rule), against
onnxruntime's fp32, 2 threads, on an AMD EPYC with AVX512-VNNI shared with other work:

- QOperator and QDQ ran alike (full network at batch 4 and 8 and the 6-frame tail
  network, timed in turns: 1.79-1.97x and 1.76-2.02x fp32); QOperator was a little
  closer to fp32 on both networks (mean 1.41 against 1.48-1.52 grey levels, largest
  score change 1.4% against 1.9% of the threshold on the full network, 0.8% against
  1.0% on the tail), no decision changed under either: QOperator.
- MinMax, Entropy and Percentile calibration gave the same reconstructions within 0.03
  grey levels on average; Entropy took 2.6x and Percentile 1.6x as long: MinMax.
- 4, 8 or 16 calibration windows: the same accuracy; 16 (the engine's calibration set,
  as MXNet's int8 takes) cost 3 s for the whole STAE.
- Keeping the first and last convolutions in fp32 (as MXNet's int8 does) cut the mean
  error by a third (0.95 grey levels) but made the network slower than fp32 (0.8x): the quantise and
  dequantise steps around them cost more than the int8 saves. Keeping the ConvLSTMs'
  hidden-to-hidden convolutions in fp32: 1.33x. Per-tensor weights: 2.06 grey levels
  mean error instead of 1.48, no faster.

On a CPU without VNNI or AMX, onnxruntime's uint8 x int8 products go through
``vpmaddubsw``, whose 16-bit sums can saturate; there the weights take 7 bits
(``reduce_range``), which cannot saturate (measured here: 1.84 instead of 1.41 grey
levels mean error, largest 12.0 instead of 9.3, largest score change 0.9% of the
threshold, no decision changed; as fast).
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from models.export import INPUT
from stream.detector import precision as precisions

log = logging.getLogger(__name__)
#: ONNX ops quantised to int8; everything else runs in fp32.
INT8_OPS = ("Conv",)


class QuantizationError(RuntimeError):
    """onnxruntime's quantisation tools could not be imported or could not quantise a
    network (the message says which and what to do): ``auto`` skips int8, an explicit
    ``precision: int8`` fails with it."""


def reduce_range(flags: frozenset[str]) -> bool:
    """Whether int8 weights take 7 bits on this CPU: where it has neither VNNI nor
    AMX-int8 (onnxruntime's uint8 x int8 products may saturate there)."""
    return not flags & precisions.VNNI


def quantize_int8(model, windows: np.ndarray, flags: frozenset[str] | None = None) -> bytes:
    """``model`` with its convolutions in int8, calibrated on ``windows``.

    Args:
        model: An fp32 ``onnx.ModelProto`` (:func:`models.export.inference_onnx`), one
            input named :data:`models.export.INPUT`.
        windows: Normal windows (n, T, S, S), float32, in the contract's units; each is
            one calibration batch.
        flags: CPU flags (default: this CPU's), for :func:`reduce_range`.

    Returns:
        The quantised model, serialised.

    Raises:
        QuantizationError: If onnxruntime's quantisation tools cannot be imported (they
            need the ``ml_dtypes`` package), saying what to install, or fail on the model.
    """
    try:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as err:
        raise QuantizationError(f"precision int8 with backend onnxruntime needs onnxruntime's "
                          f"quantisation tools, which failed to import ({err}); install them "
                          "with pip install 'ml_dtypes>=0.4,<0.5' or use precision fp32") \
            from err
    import onnx

    flags = precisions.cpu_flags() if flags is None else flags
    started = time.perf_counter()
    model = onnx.ModelProto.FromString(model.SerializeToString())   # a copy to name
    for i, node in enumerate(model.graph.node):
        node.name = node.name or f"{node.op_type}_{i}"

    class Windows(CalibrationDataReader):
        """One calibration window per batch."""

        def __init__(self) -> None:
            self.batches = iter(np.ascontiguousarray(windows[i:i + 1], np.float32)
                                for i in range(len(windows)))

        def get_next(self) -> dict | None:
            batch = next(self.batches, None)
            return None if batch is None else {INPUT: batch}

    with tempfile.TemporaryDirectory(prefix="vadstream-int8-") as tmp:
        source, prepared, quantised = (Path(tmp) / f for f in ("fp32.onnx", "pre.onnx",
                                                               "int8.onnx"))
        onnx.save(model, source)
        # onnx shape inference and onnxruntime's graph optimisation, as onnxruntime
        # recommends before quantising (its symbolic shape inference does not know the
        # exported Reshape targets and is not needed: every shape is static but the batch)
        try:
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
            quantize_static(str(prepared), str(quantised), Windows(),
                            quant_format=QuantFormat.QOperator,
                            op_types_to_quantize=list(INT8_OPS), per_channel=True,
                            reduce_range=reduce_range(flags),
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax,
                            calibration_providers=["CPUExecutionProvider"])
        # the tools raise whatever their steps raise (KeyError, ValueError, onnx's and
        # onnxruntime's own errors): one type, naming the step's error
        except Exception as err:  # noqa: BLE001
            raise QuantizationError(f"onnxruntime could not quantise this network to int8 "
                                    f"({type(err).__name__}: {err}); use precision fp32, "
                                    "or backend mxnet") from err
        out = quantised.read_bytes()
    log.info("int8 for onnxruntime: convolutions quantised on %d normal windows%s in %.1f s",
             len(windows), ", 7-bit weights (no VNNI)" if reduce_range(flags) else "",
             time.perf_counter() - started)
    return out
