"""What the engine needs from a backend (:class:`Backend`), and what every backend's
networks share: :class:`BatchedRunner` (a whole network over the engine's buffers),
:class:`SplitNetwork` (one of an encoder-reuse split's networks over its own buffers) and
the check of a built network against the network it was built from."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import mxnet as mx
import numpy as np
from mxnet.gluon import HybridBlock

from models.weights import WeightsMeta


class BatchedRunner:
    """What every backend's runner shares: ``batches`` (the engine's input buffers),
    ``outputs`` (its own) and ``run(n, slot)``, the first ``n`` windows of a slot."""

    batches: list[np.ndarray]
    outputs: list[np.ndarray]

    def run(self, n: int, slot: int = 0) -> np.ndarray:
        raise NotImplementedError

    def reconstruct(self, windows: np.ndarray) -> np.ndarray:
        """The outputs of any number of windows, always run at the full batch (the last
        call padded) so that no new input shape takes memory; a new array."""
        batch = self.batches[0]
        n = len(batch)
        out = np.empty((len(windows), *self.outputs[0].shape[1:]), np.float32)
        for i in range(0, len(windows), n):
            k = min(n, len(windows) - i)
            batch[:] = windows[i + np.arange(n) % k]
            out[i:i + k] = self.run(n)[:k]
        return out


class SplitNetwork(Protocol):
    """One of a split's networks, built over fixed NumPy buffers: per slot, one input
    buffer per network input and one output buffer per output, (max rows, ...) each."""

    def run(self, n: int, slot: int) -> list[np.ndarray]:
        """Run on the first ``n`` rows of the slot's inputs; the first ``n`` rows of its
        output buffers (views), valid until the next call on that slot."""
        ...


@runtime_checkable
class Backend(Protocol):
    """An inference backend as the engine (:class:`stream.detector.engine.Engine`) and
    encoder reuse (:mod:`stream.detector.reuse`) use it. Implementations:
    :class:`stream.detector.backends.mxnet_backend.MXNetBackend` and
    :class:`stream.detector.backends.onnxruntime_backend.OnnxRuntimeBackend`; register a
    new one in :func:`stream.detector.backends.get_backend` and
    :data:`stream.defaults.BACKENDS`.
    """

    #: Its name in configs (``detector.backend``).
    name: str
    #: Who builds and runs its networks (for the engine's log lines).
    runtime: str
    #: The precisions it runs (``auto`` aside): what :meth:`resolve` may return.
    precisions: tuple[str, ...]
    #: What a CPU lacks when ``auto`` has no candidate to measure (for the report).
    candidate_isa: str
    #: Precisions it runs encoder reuse at.
    reuse_precisions: tuple[str, ...]
    #: Errors that mean a candidate precision cannot be built or run here (``auto``
    #: skips that candidate).
    build_errors: tuple[type[Exception], ...]

    def resolve(self, precision: str, ctx: mx.Context) -> str:
        """The precision to run: ``precision`` once checked, or ``auto`` where there are
        candidates to measure (else ``fp32``).

        Raises:
            ValueError: For a precision or device it cannot run, saying what to use.
        """
        ...

    def candidates(self, flags: frozenset[str] | None = None) -> tuple[str, ...]:
        """The reduced precisions ``auto`` times against fp32 on a CPU with ``flags``."""
        ...

    def runner(self, net: HybridBlock, meta: WeightsMeta, ctx: mx.Context, precision: str,
               batches: list[np.ndarray], shape: tuple[int, ...],
               calibration: Callable[[], np.ndarray]) -> BatchedRunner:
        """``net`` (a family's inference form) built at ``precision`` on ``ctx`` over the
        engine's input ``batches``, each window's output of ``shape``; ``calibration()``
        gives normal windows where the precision needs them (int8)."""
        ...

    def supports_reuse(self, precision: str) -> bool:
        """Whether it runs encoder reuse's split networks at ``precision``."""
        ...

    def split_network(self, net: HybridBlock, inputs: list[list[np.ndarray]],
                      outputs: list[list[np.ndarray]], ctx: mx.Context, precision: str,
                      calibration: list[np.ndarray] | None = None,
                      keep_fp32: Sequence[str] = ()) -> SplitNetwork:
        """One of a split's networks built at ``precision`` over the buffers (see
        :class:`SplitNetwork`), checked against ``net``; int8 is calibrated on
        ``calibration`` (normal samples, one array per input, (n, ...) each) and keeps
        the layers named by ``keep_fp32`` (substrings) in fp32 where the backend can."""
        ...


def network_outputs(net: HybridBlock, sample: Sequence[mx.nd.NDArray]) -> list[np.ndarray]:
    """``net``'s outputs on ``sample`` (one array per input) as NumPy arrays."""
    ys = net(*sample)
    return [y.asnumpy() for y in (ys if isinstance(ys, (list, tuple)) else [ys])]


def random_sample(shapes: Sequence[tuple[int, ...]], ctx: mx.Context
                  ) -> list[mx.nd.NDArray]:
    """Random inputs in [0, 1) of ``shapes`` (seeded), to check a built network."""
    rng = np.random.default_rng(0)
    return [mx.nd.array(rng.random(s, np.float32), ctx=ctx) for s in shapes]


def calibration_sample(calibration: Sequence[np.ndarray], rows: int, ctx: mx.Context
                       ) -> list[mx.nd.NDArray]:
    """The first ``rows`` calibration samples of each input, to check an int8 network
    on normal inputs (random ones lie outside its calibrated ranges)."""
    return [mx.nd.array(np.ascontiguousarray(c[:rows], np.float32), ctx=ctx)
            for c in calibration]


#: How far an int8 split network's outputs may be from fp32's on normal samples, relative
#: to the largest fp32 output: int8 activations resolve 1/255 of each layer's calibrated
#: range, and a few layers' rounding adds up (measured 0.02-0.05 on the shipped weights);
#: an input read in the wrong place gives errors of the order of the outputs themselves.
INT8_BUILD_TOLERANCE = 0.25


class Int8SplitError(RuntimeError):
    """A split network built at int8 strays too far from fp32 on normal inputs (weights
    whose ranges int8 cannot hold, or an input read in the wrong place): encoder reuse
    leaves that model whole (:func:`stream.detector.reuse.build_split`)."""


def check_int8_outputs(what: str, got: Sequence[np.ndarray],
                       reference: Sequence[np.ndarray], hint: str) -> None:
    """Raise unless an int8 network's outputs are within :data:`INT8_BUILD_TOLERANCE`
    of the fp32 network's largest output magnitude.

    Raises:
        Int8SplitError: Naming the network (``what``), the difference and ``hint``.
    """
    for y, ref in zip(got, reference, strict=True):
        scale = float(np.abs(ref).max()) or 1.0
        if y.shape != ref.shape or np.abs(y - ref).max() > INT8_BUILD_TOLERANCE * scale:
            diff = "shapes" if y.shape != ref.shape else \
                f"values by {np.abs(y - ref).max() / scale:.3g} of their range"
            raise Int8SplitError(f"{what} at int8: the built network's outputs differ from "
                                 f"the fp32 network's ({diff}); {hint}")


def check_outputs(what: str, got: Sequence[np.ndarray], reference: Sequence[np.ndarray],
                  tolerance: float, hint: str) -> None:
    """Raise unless a built network's outputs match the network's within ``tolerance``.

    Raises:
        RuntimeError: Naming the network (``what``), the difference and ``hint``.
    """
    for y, ref in zip(got, reference, strict=True):
        if y.shape != ref.shape or not np.allclose(y, ref, rtol=tolerance, atol=tolerance):
            diff = "shapes" if y.shape != ref.shape else \
                f"values by {np.abs(y - ref).max():.3g}"
            raise RuntimeError(f"{what}: the built network's outputs differ from the "
                               f"network's ({diff}); {hint}")
