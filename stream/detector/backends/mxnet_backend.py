"""The MXNet backend: a family's networks hybridized with static memory and, on a CPU,
fused by oneDNN, at fp32 or one of MXNet 1.9.1's oneDNN reduced precisions: ``bf16``
(automatic mixed precision: convolutions in bfloat16) and ``int8`` (post-training
quantization, calibrated on normal *training* footage only, the layers the model's family
names kept in fp32: :func:`stream.detector.backends.policy.fp32_layers`).

One wrapper, :class:`MXNetNetwork`, runs every network over fixed NumPy buffers: the
engine's whole networks (:class:`MXNetRunner`) and encoder reuse's split networks.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence

import mxnet as mx
import numpy as np
from mxnet.gluon import HybridBlock

from models.weights import WeightsMeta
from stream.detector.backends.base import (
    BatchedRunner,
    calibration_sample,
    check_int8_outputs,
    check_outputs,
    network_outputs,
    random_sample,
)
from stream.detector.backends.policy import fp32_layers
from stream.detector.precision import auto_candidates, resolve_precision

#: Ops left in fp32 by int8 quantization, whatever the family: MXNet 1.9.1 has no int8
#: transposed convolution, and its int8 convolution-plus-sum fusion fails at run time
#: (uint8 vs int8) on the ConvLSTM.
INT8_FP32_OPS = ("elemwise_add", "Deconvolution", "broadcast_add")
#: Precisions MXNet runs a split at: int8 calibrates each split network on its own
#: normal inputs (:func:`stream.detector.reuse.split_calibration`).
REUSE_PRECISIONS = ("fp32", "bf16", "int8")
#: How far a built split network's outputs may be from the unfused fp32 network's on
#: random inputs: float rounding for fp32; bfloat16's 8-bit mantissa for bf16.
_BUILD_TOLERANCE = {"fp32": 1e-4, "bf16": 5e-2}


class MXNetBackend:
    """Runs the inference form with MXNet (oneDNN-fused on a CPU), at any precision;
    ``auto`` is measured by the engine (:mod:`stream.detector.backends.policy`)."""

    name = "mxnet"
    runtime = "oneDNN"
    precisions = ("fp32", "bf16", "int8")
    candidate_isa = "neither VNNI nor native bf16"
    #: oneDNN's "could not create a primitive", or an assert in MXNet's AMP.
    build_errors = (mx.base.MXNetError, AssertionError)
    reuse_precisions = REUSE_PRECISIONS

    def resolve(self, precision: str, ctx: mx.Context) -> str:
        """:func:`stream.detector.precision.resolve_precision`."""
        return resolve_precision(precision, ctx)

    def candidates(self, flags: frozenset[str] | None = None) -> tuple[str, ...]:
        """:func:`stream.detector.precision.auto_candidates`: int8 and bf16."""
        return auto_candidates(flags)

    def supports_reuse(self, precision: str) -> bool:
        return precision in self.reuse_precisions

    def runner(self, net: HybridBlock, meta: WeightsMeta, ctx: mx.Context, precision: str,
               batches: list[np.ndarray], shape: tuple[int, ...],
               calibration: Callable[[], np.ndarray]) -> MXNetRunner:
        """``net`` built at ``precision`` (:func:`build_network`) over ``batches``."""
        sample = [mx.nd.array(batches[0][:1], ctx=ctx)]
        built = build_network(net, ctx, precision, sample, calibration, fp32_layers(meta))
        return MXNetRunner(built, batches, shape, ctx)

    def split_network(self, net: HybridBlock, inputs: list[list[np.ndarray]],
                      outputs: list[list[np.ndarray]], ctx: mx.Context, precision: str,
                      calibration: list[np.ndarray] | None = None,
                      keep_fp32: Sequence[str] = ()) -> MXNetNetwork:
        """A split's network built at ``precision`` (one of :data:`REUSE_PRECISIONS`) over
        the buffers, checked against itself unfused in fp32 (on random inputs; int8: on
        its first normal ``calibration`` samples, within
        :data:`~stream.detector.backends.base.INT8_BUILD_TOLERANCE`): MXNet 1.9.1's
        ``optimize_for`` binds a graph's inputs by the order it first reads them, so a
        network with several inputs must read them in order.

        Raises:
            ValueError: For a precision it runs no split at, or int8 without calibration.
            RuntimeError: If the built network's outputs differ from the network's
                (:class:`~stream.detector.backends.base.Int8SplitError` at int8).
        """
        if not self.supports_reuse(precision):
            raise ValueError(f"backend mxnet runs encoder reuse at "
                             f"{' or '.join(REUSE_PRECISIONS)}, not {precision}; set "
                             "detector.encoder_reuse: false")
        hint = "its inputs must be read in their order (see above)"
        if precision == "int8":
            if calibration is None:
                raise ValueError("encoder reuse at int8 needs calibration samples")
            sample = calibration_sample(calibration, 2, ctx)
            reference = network_outputs(net, sample)
            built = quantize_int8(net, calibration, keep_fp32)
            check_int8_outputs(type(net).__name__, network_outputs(built, sample),
                               reference, hint)
            return MXNetNetwork(built, inputs, outputs, ctx)
        sample = random_sample([(1, *a.shape[1:]) for a in inputs[0]], ctx)
        reference = network_outputs(net, sample)
        built = build_network(net, ctx, precision, sample)
        check_outputs(type(built).__name__, network_outputs(built, sample), reference,
                      _BUILD_TOLERANCE[precision], hint)
        return MXNetNetwork(built, inputs, outputs, ctx)


class MXNetNetwork:
    """A built network over fixed NumPy buffers, per slot one per input and one per output
    (:class:`stream.detector.backends.base.SplitNetwork`), read and written in place
    (no copy on a CPU).

    Args:
        net: The built network.
        inputs: Per slot, the input buffers, (max rows, ...) each.
        outputs: Per slot, the output buffers.
        ctx: Where it runs (inputs are copied there off a CPU).
    """

    def __init__(self, net: HybridBlock, inputs: list[list[np.ndarray]],
                 outputs: list[list[np.ndarray]], ctx: mx.Context) -> None:
        self.net, self.inputs, self.outputs, self.ctx = net, inputs, outputs, ctx
        self._views: dict[tuple[int, int], tuple[list, list]] = {}

    def run(self, n: int, slot: int) -> list[np.ndarray]:
        if (slot, n) not in self._views:
            # NDArrays over the first n rows of the NumPy buffers, sharing their memory
            self._views[slot, n] = (
                [mx.nd.from_numpy(a[:n], zero_copy=True) for a in self.inputs[slot]],
                [mx.nd.from_numpy(a[:n], zero_copy=True) for a in self.outputs[slot]])
        sources, targets = self._views[slot, n]
        if self.ctx.device_type != "cpu":
            sources = [s.as_in_context(self.ctx) for s in sources]
        ys = self.net(*sources)
        ys = ys if isinstance(ys, (list, tuple)) else [ys]
        for y, target in zip(ys, targets, strict=True):
            (y if y.dtype == np.float32 else y.astype(np.float32)).copyto(target)
        for target in targets:
            target.wait_to_read()
        return [a[:n] for a in self.outputs[slot]]


class MXNetRunner(BatchedRunner):
    """One built network over the engine's input buffers and its own output buffers (an
    :class:`MXNetNetwork` of one input and one output).

    Args:
        net: The built network (:attr:`net`: what :func:`train.offline.score_clip` calls).
        batches: The engine's input buffers, (max_batch, T, ...) each.
        shape: One window's output shape.
        ctx: Where it runs.
    """

    def __init__(self, net: HybridBlock, batches: list[np.ndarray], shape: tuple[int, ...],
                 ctx: mx.Context) -> None:
        self.net = net
        self.batches = batches
        self.outputs = [np.zeros((len(batches[0]), *shape), np.float32) for _ in batches]
        self._network = MXNetNetwork(net, [[b] for b in batches],
                                     [[o] for o in self.outputs], ctx)

    def run(self, n: int, slot: int = 0) -> np.ndarray:
        """The outputs of the first ``n`` windows of ``batches[slot]``: a view of the slot's
        output buffer, valid until the next call on that slot."""
        return self._network.run(n, slot)[0]


def build_network(net: HybridBlock, ctx: mx.Context, precision: str,
                  sample: Sequence[mx.nd.NDArray],
                  calibration: Callable[[], np.ndarray] | None = None,
                  keep_fp32: Sequence[str] = ()) -> HybridBlock:
    """The network to run at ``precision``, hybridized with static memory (on a CPU,
    oneDNN-fused).

    Args:
        net: The network (a family's inference form or a split's network, not yet
            hybridized).
        ctx: Where it runs.
        precision: ``fp32``, ``bf16`` or ``int8`` (already resolved).
        sample: One input batch per network input, (1, ...) each.
        calibration: Returns normal windows for int8 calibration (called only for int8).
        keep_fp32: int8 only: layers (name substrings) kept in fp32.

    Raises:
        ValueError: For int8 without ``calibration``.
    """
    if precision == "int8":
        if calibration is None:
            raise ValueError("int8 needs calibration windows")
        return quantize_int8(net, calibration(), keep_fp32)
    if precision == "bf16":
        return convert_bf16(net, list(sample), ctx)
    net.hybridize(static_alloc=True, static_shape=True)
    if ctx.device_type == "cpu":
        # oneDNN fusion: each convolution with its activation (and the ConvLSTM's sum)
        net.optimize_for(*sample, backend="MKLDNN", static_alloc=True, static_shape=True)
    return net


def quantize_int8(net: HybridBlock, windows: np.ndarray | Sequence[np.ndarray],
                  keep_fp32: Sequence[str] = (), batch: int = 4) -> HybridBlock:
    """The network with its convolutions in int8 (oneDNN), calibrated on ``windows``
    (a sequence of arrays: one per input of a network with several, as Gluon's export
    names them ``data0``, ``data1``, ...).

    Calibration takes each layer's min and max over the windows ("naive": KL-divergence
    "entropy" calibration ruined the reconstruction here).

    Args:
        net: An fp32 inference network (not yet optimised).
        windows: Normal windows, (n, T, size, size).
        keep_fp32: Layers (name substrings) kept in fp32: the family's
            (:attr:`models.family.ModelFamily.int8_fp32_layers`).
        batch: Windows per calibration pass.

    Returns:
        A hybridized SymbolBlock.
    """
    from mxnet.contrib.quantization import quantize_net

    arrays = [windows] if isinstance(windows, np.ndarray) else list(windows)
    batch = min(batch, len(arrays[0]))
    named = OrderedDict([("data", arrays[0])]) if len(arrays) == 1 else \
        OrderedDict((f"data{i}", a) for i, a in enumerate(arrays))
    data = mx.io.NDArrayIter(data=OrderedDict((k, mx.nd.array(a)) for k, a in named.items()),
                             batch_size=batch)
    quiet = logging.getLogger("vadstream.quantize")
    quiet.setLevel(logging.WARNING)
    out = quantize_net(net, quantized_dtype="int8", calib_mode="naive", calib_data=data,
                       exclude_layers_match=list(keep_fp32),
                       exclude_operators=list(INT8_FP32_OPS), ctx=mx.cpu(), logger=quiet)
    out.hybridize(static_alloc=True, static_shape=True)
    return out


def convert_bf16(net: HybridBlock, sample: mx.nd.NDArray | list[mx.nd.NDArray],
                 ctx: mx.Context) -> HybridBlock:
    """The network with its convolutions in bfloat16 (MXNet AMP, oneDNN).

    Args:
        net: An fp32 network.
        sample: One input batch (to build the graph); a list for a network with several
            inputs.
        ctx: Where it runs.
    """
    from mxnet.contrib import amp

    net.hybridize()
    net(*sample) if isinstance(sample, list) else net(sample)
    out = amp.convert_hybrid_block(net, target_dtype="bfloat16", ctx=ctx,
                                   cast_optional_params=True)
    out.hybridize(static_alloc=True, static_shape=True)
    return out
