"""int8 for the onnxruntime backend: the exported inference form quantised statically at
start-up (onnxruntime's ``quantize_static``), calibrated on normal training windows.

Every convolution runs in int8 (``QLinearConv``, the QOperator form): weights int8 per
output channel, activations uint8 with MinMax ranges; the rest stays fp32. How these
settings were chosen (measured on training windows only): docs/results/bench.md,
*int8 on onnxruntime: how its settings were chosen*.
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


def quantize_int8(model, windows: np.ndarray | dict[str, np.ndarray],
                  flags: frozenset[str] | None = None) -> bytes:
    """``model`` with its convolutions in int8, calibrated on ``windows``.

    Args:
        model: An fp32 ``onnx.ModelProto`` (:func:`models.export.inference_onnx`), one
            input named :data:`models.export.INPUT`; or one with several inputs (an
            encoder-reuse split's network, :func:`models.export.network_to_onnx`).
        windows: Normal windows (n, T, S, S), float32, in the contract's units; each is
            one calibration batch. For several inputs: per input name, its samples
            (n, ...), sample i of each making batch i.
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

    named = {INPUT: windows} if isinstance(windows, np.ndarray) else dict(windows)
    count = len(next(iter(named.values())))

    class Windows(CalibrationDataReader):
        """One calibration window (sample of each input) per batch."""

        def __init__(self) -> None:
            self.batches = iter({k: np.ascontiguousarray(a[i:i + 1], np.float32)
                                 for k, a in named.items()} for i in range(count))

        def get_next(self) -> dict | None:
            return next(self.batches, None)

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
             count, ", 7-bit weights (no VNNI)" if reduce_range(flags) else "",
             time.perf_counter() - started)
    return out
