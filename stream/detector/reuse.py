"""Encoder reuse: each frame through a split model's per-frame encoder once.

Live windows overlap (the STAE's 10 frames every 5, the predictor's 4 context frames every
frame), and the whole network encodes every frame of every window again. A family that
offers a split (:meth:`models.family.ModelFamily.split`) runs here as its encoder on the
frames no earlier window had, whose outputs are kept per stream in a
:class:`FeatureStore`, and its temporal part on each window's cached outputs.

The networks run on the engine's backend (:mod:`stream.detector.engine`): each backend
builds a split's networks over :class:`SplitRunner`'s buffers as a :class:`SplitNetwork`
(MXNet: :func:`mxnet_network`, oneDNN-fused; onnxruntime:
:class:`stream.detector.onnx_backend.OnnxNetwork`, exported to ONNX), so the runner, the
stores and the scheduling are the same for both.

Threads: the detector's loop decides which frames a job encodes (they are copied into
:attr:`SplitRunner.fresh` then, the ring moves on); the inference thread alone encodes them,
writes them to the streams' stores and reads windows back, in job order, so a store has
one owner.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import mxnet as mx
import numpy as np
from mxnet.gluon import HybridBlock

from models.family import FeatureGroup, ModelFamily, Split
from models.weights import WeightsMeta
from stream.detector.precision import convert_bf16

log = logging.getLogger(__name__)


class FeatureStore:
    """One stream's encoder outputs, per frame, in a ring addressed by a frame key that
    only grows (the stream's frames counted over all its segments).

    Args:
        groups: The split's feature groups.
        capacity: Frames held: the most one job's windows of the stream span.
    """

    def __init__(self, groups: Sequence[FeatureGroup], capacity: int) -> None:
        self.groups = tuple(groups)
        self.capacity = capacity
        self.rings = [np.zeros((capacity, *g.shape), np.float32) for g in self.groups]
        self.keys = np.full(capacity, -1, np.int64)

    @property
    def nbytes(self) -> int:
        return sum(r.nbytes for r in self.rings)

    def put(self, key: int, encoded: Sequence[np.ndarray], row: int) -> None:
        """Keep row ``row`` of each group's encoder output as frame ``key``'s."""
        slot = key % self.capacity
        for ring, out in zip(self.rings, encoded, strict=True):
            ring[slot] = out[row]
        self.keys[slot] = key

    def gather(self, start: int, inputs: Sequence[np.ndarray], i: int) -> None:
        """Write the window starting at frame key ``start`` into row ``i`` of each
        group's temporal input (its positions' features).

        Raises:
            RuntimeError: If a frame's features are not held (a scheduling bug: the
                scores would be wrong).
        """
        for g, ring, out in zip(self.groups, self.rings, inputs, strict=True):
            keys = start + np.asarray(g.positions)
            slots = keys % self.capacity
            if not np.array_equal(self.keys[slots], keys):
                raise RuntimeError(f"encoder reuse: frames {keys.tolist()} are not all held "
                                   f"(the store holds {sorted(self.keys.tolist())})")
            np.take(ring, slots, axis=0, out=out[i])


class SplitNetwork(Protocol):
    """One of a split's networks, built over fixed NumPy buffers: per slot, one input
    buffer per network input and one output buffer per output, (max rows, ...) each."""

    def run(self, n: int, slot: int) -> list[np.ndarray]:
        """Run on the first ``n`` rows of the slot's inputs; the first ``n`` rows of its
        output buffers (views), valid until the next call on that slot."""
        ...


#: How a backend builds a :class:`SplitNetwork`: (network, inputs per slot, outputs per
#: slot) -> the network over those buffers.
NetworkFactory = Callable[[HybridBlock, list[list[np.ndarray]], list[list[np.ndarray]]],
                          SplitNetwork]


class _Net:
    """A hybridized network over fixed NumPy input and output buffers (per slot)."""

    def __init__(self, net: HybridBlock, inputs: list[list[np.ndarray]],
                 outputs: list[list[np.ndarray]], ctx: mx.Context) -> None:
        self.net, self.inputs, self.outputs, self.ctx = net, inputs, outputs, ctx
        self._views: dict[tuple[int, int], tuple[list, list]] = {}

    def run(self, n: int, slot: int) -> list[np.ndarray]:
        if (slot, n) not in self._views:
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


def network_outputs(net: HybridBlock, sample: Sequence[mx.nd.NDArray]) -> list[np.ndarray]:
    """``net``'s outputs on ``sample`` (one array per input) as NumPy arrays."""
    ys = net(*sample)
    return [y.asnumpy() for y in (ys if isinstance(ys, (list, tuple)) else [ys])]


def random_sample(shapes: Sequence[tuple[int, ...]], ctx: mx.Context
                  ) -> list[mx.nd.NDArray]:
    """Random inputs in [0, 1) of ``shapes`` (seeded), to check a built network."""
    rng = np.random.default_rng(0)
    return [mx.nd.array(rng.random(s, np.float32), ctx=ctx) for s in shapes]


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


#: Precisions MXNet runs a split at; int8's calibration is the whole network's, so an
#: int8 model runs whole.
PRECISIONS = ("fp32", "bf16")
#: How far a built network's outputs may be from the unfused fp32 network's on random
#: inputs: float rounding for fp32; bfloat16's 8-bit mantissa for bf16.
_BUILD_TOLERANCE = {"fp32": 1e-4, "bf16": 5e-2}


def _build(net: HybridBlock, shapes: Sequence[tuple[int, ...]], ctx: mx.Context,
           precision: str) -> HybridBlock:
    """``net`` as the engine builds a network (hybridized with static memory and, on a
    CPU, oneDNN-fused; bf16: :func:`stream.detector.precision.convert_bf16`), checked
    against itself unfused in fp32 on random inputs of ``shapes``: MXNet 1.9.1's
    ``optimize_for`` binds a graph's inputs by the order it first reads them, so a
    network with several inputs must read them in order."""
    sample = random_sample(shapes, ctx)
    reference = network_outputs(net, sample)
    if precision == "bf16":
        net = convert_bf16(net, sample, ctx)
    else:
        net.hybridize(static_alloc=True, static_shape=True)
        if ctx.device_type == "cpu":
            net.optimize_for(*sample, backend="MKLDNN", static_alloc=True, static_shape=True)
    check_outputs(type(net).__name__, network_outputs(net, sample), reference,
                  _BUILD_TOLERANCE[precision], "its inputs must be read in their order "
                  "(see above)")
    return net


def mxnet_network(net: HybridBlock, inputs: list[list[np.ndarray]],
                  outputs: list[list[np.ndarray]], ctx: mx.Context, precision: str
                  ) -> SplitNetwork:
    """A split's network built by MXNet at ``precision`` (one of :data:`PRECISIONS`) over
    the buffers (see :class:`SplitNetwork`)."""
    shapes = [(1, *a.shape[1:]) for a in inputs[0]]
    return _Net(_build(net, shapes, ctx, precision), inputs, outputs, ctx)


class SplitRunner:
    """A split model's encoder and temporal networks, built by a backend over their own
    buffers: two slots, as the engine's (one filled while the other runs).

    Args:
        split: The family's split.
        frame_shape: One frame's shape (the input contract's).
        output_shapes: One window's output shape per temporal network (by its key).
        max_batch: Most windows per job.
        build: Builds each network over its buffers (the backend's).
    """

    def __init__(self, split: Split, frame_shape: tuple[int, ...],
                 output_shapes: dict[int, tuple[int, ...]], max_batch: int,
                 build: NetworkFactory) -> None:
        self.groups = split.groups
        self.context = split.context
        self.max_batch = max_batch
        #: Most frames one job encodes: every window all new (a stream's first ones).
        self.max_fresh = max_batch * self.context
        slots = range(2)
        self.fresh = [np.zeros((self.max_fresh, *frame_shape), np.float32) for _ in slots]
        #: Each fresh frame's predecessor, where the encoder reads it (``split.previous``).
        self.previous = ([np.zeros_like(f) for f in self.fresh] if split.previous else None)
        # The inference thread runs one job at a time: one buffer of encoder outputs and
        # of temporal inputs serves both slots (the outputs are read after the job).
        encoded = [np.zeros((self.max_fresh, *g.shape), np.float32) for g in self.groups]
        self.inputs = [[np.zeros((max_batch, len(g.positions), *g.shape), np.float32)
                        for g in self.groups]] * 2
        frames = ([[f] for f in self.fresh] if self.previous is None else
                  [[f, p] for f, p in zip(self.fresh, self.previous, strict=True)])
        self.encoder = build(split.encoder, frames, [encoded] * 2)
        self.temporal = {}
        for key, net in split.temporal.items():
            outputs = [[np.zeros((max_batch, *output_shapes[key]), np.float32)]
                       for _ in slots]
            self.temporal[key] = build(net, self.inputs, outputs)
        self.busy_s = 0.0

    def store(self, stride: int) -> FeatureStore:
        """A stream's store for windows every ``stride`` frames: one job of
        ``max_batch`` windows spans ``context + (max_batch - 1) * stride`` frames."""
        return FeatureStore(self.groups, self.context + (self.max_batch - 1) * stride)

    def store_bytes(self, stride: int) -> int:
        """Bytes of :meth:`store`'s rings."""
        per_frame = sum(4 * int(np.prod(g.shape)) for g in self.groups)
        return per_frame * (self.context + (self.max_batch - 1) * stride)

    def run(self, fresh: Sequence[tuple[FeatureStore, int]],
            windows: Sequence[tuple[FeatureStore, int]], outputs: int, slot: int
            ) -> np.ndarray:
        """Encode the frames in ``fresh[slot]``, keep them, and run the temporal network
        that outputs ``outputs`` frames on the windows.

        Args:
            fresh: Per frame written to :attr:`fresh` (in order): its stream's store and
                its key.
            windows: Per window: its stream's store and its first frame's key.
            outputs: Which temporal network (frames it outputs per window).
            slot: Which buffers.

        Returns:
            (len(windows), ...) view of the slot's output buffer.

        Raises:
            ValueError: If there are more fresh frames or windows than the buffers hold.
        """
        if len(fresh) > self.max_fresh or not 1 <= len(windows) <= self.max_batch:
            raise ValueError(f"{len(fresh)} fresh frames and {len(windows)} windows: the "
                             f"buffers hold up to {self.max_fresh} and 1..{self.max_batch}")
        started = time.perf_counter()
        if fresh:
            encoded = self.encoder.run(len(fresh), slot)
            for row, (store, key) in enumerate(fresh):
                store.put(key, encoded, row)
        inputs = self.inputs[slot]
        for i, (store, start) in enumerate(windows):
            store.gather(start, inputs, i)
        out = self.temporal[outputs].run(len(windows), slot)[0]
        self.busy_s += time.perf_counter() - started
        return out

    def steady(self, windows: int, stride: int, outputs: int) -> callable:
        """A call that does what one job of ``windows`` consecutive windows of one stream
        does once a stream runs (each encodes ``stride`` new frames), for timing."""
        store = self.store(stride)
        state = {"next": 0}
        span = self.context + (windows - 1) * stride
        rng = np.random.default_rng(0)
        for f in [*self.fresh, *(self.previous or [])]:
            f[:] = rng.random(f.shape, np.float32)
        self.run([(store, k) for k in range(span)], [(store, 0)], outputs, 0)
        state["next"] = span

        def call() -> np.ndarray:
            first = state["next"]
            fresh = [(store, first + k) for k in range(windows * stride)]
            state["next"] = first + windows * stride
            newest = state["next"] - self.context
            starts = [newest - stride * (windows - 1 - i) for i in range(windows)]
            return self.run(fresh, [(store, s) for s in starts], outputs, 0)
        return call


def build_split(family: ModelFamily, trained: HybridBlock, meta: WeightsMeta,
                ctx: mx.Context, precision: str, max_batch: int,
                output_shapes: dict[int, tuple[int, ...]],
                decode_last: int | None, backend) -> SplitRunner | None:
    """The encoder-reuse networks of a model at ``precision`` on ``backend`` (the
    engine's: its ``split_network`` builds them, at its ``reuse_precisions``), or None
    where it runs whole: its family offers no split, or the backend runs no split at
    that precision (int8 is calibrated as a whole; logged).
    """
    split = family.split(trained, meta, ctx, decode_last)
    if split is None:
        return None
    if precision not in backend.reuse_precisions:
        log.info("encoder reuse: %s runs whole at %s on %s (reuse runs at %s there): each "
                 "window encodes all its frames", meta.model, precision, backend.name,
                 " or ".join(backend.reuse_precisions))
        return None
    if set(split.temporal) != set(output_shapes):
        raise ValueError(f"{meta.model}: the split's temporal networks output "
                         f"{sorted(split.temporal)} frames per window, its inference "
                         f"networks {sorted(output_shapes)}; they must match")

    def build(net: HybridBlock, inputs: list[list[np.ndarray]],
              outputs: list[list[np.ndarray]]) -> SplitNetwork:
        return backend.split_network(net, inputs, outputs, ctx, precision)

    runner = SplitRunner(split, tuple(meta.contract.shape), output_shapes, max_batch, build)
    log.info("encoder reuse: %s encodes each frame once on %s (%d frames of context, "
             "%.1f MB of features per frame)", meta.model, backend.name, runner.context,
             sum(4 * np.prod(g.shape) for g in split.groups) / 2**20)
    return runner
