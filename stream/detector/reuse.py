"""Encoder reuse: each frame through a split model's per-frame encoder once.

Live windows overlap (the STAE's 10 frames every 5, the predictor's 4 context frames every
frame), and the whole network encodes every frame of every window again. A family that
offers a split (:meth:`models.family.ModelFamily.split`) runs here as its encoder on the
frames no earlier window had, whose outputs are kept per stream in a
:class:`FeatureStore`, and its temporal part on each window's cached outputs.

The networks run on the engine's backend (:mod:`stream.detector.backends`): each backend
builds a split's networks over :class:`SplitRunner`'s buffers as a
:class:`~stream.detector.backends.base.SplitNetwork` (MXNet:
:class:`~stream.detector.backends.mxnet_backend.MXNetNetwork`, oneDNN-fused; onnxruntime:
:class:`~stream.detector.backends.onnxruntime_backend.OnnxNetwork`, exported to ONNX), so
the runner, the stores and the scheduling are the same for both.

Precision: a split runs at the engine's precision, int8 included. int8 is calibrated per
network on the engine's normal calibration windows (:func:`split_calibration`: the encoder
on their frames, each temporal network on the fp32 encoder's features of them), and kept
only where the split decides as the whole network at that precision on those windows
(:func:`split_changes`, the rule ``auto`` applies to a reduced precision); else the model
runs whole (logged).

Threads: the detector's loop decides which frames a job encodes (they are copied into
:attr:`SplitRunner.fresh` then, the ring moves on); the inference thread alone encodes them,
writes them to the streams' stores and reads windows back, in job order, so a store has
one owner.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import mxnet as mx
import numpy as np
from mxnet.gluon import HybridBlock

from models.family import FeatureGroup, ModelFamily, Split
from models.weights import WeightsMeta
from stream.detector.backends.base import Backend, Int8SplitError, SplitNetwork
from stream.detector.backends.policy import check_name, reconstruction_changed

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


#: How a backend builds a :class:`SplitNetwork`: (network, inputs per slot, outputs per
#: slot, calibration samples per input or None) -> the network over those buffers.
NetworkFactory = Callable[[HybridBlock, list[list[np.ndarray]], list[list[np.ndarray]],
                           list[np.ndarray] | None], SplitNetwork]
#: Per-window verdicts (see :data:`stream.detector.backends.policy.Decide`).
Verdicts = Callable[[np.ndarray, np.ndarray], np.ndarray]


def window_frames(windows: np.ndarray, context: int, previous: bool
                  ) -> list[np.ndarray]:
    """The encoder's inputs for every context frame of ``windows`` (N, T, ...), window by
    window: the frames (N·context, ...) and, with ``previous``, each one's predecessor
    (the window's oldest frame gets itself, as the live detector gives it)."""
    frames = windows[:, :context].reshape(-1, *windows.shape[2:])
    if not previous:
        return [np.ascontiguousarray(frames, np.float32)]
    before = windows[:, np.maximum(np.arange(context) - 1, 0)].reshape(frames.shape)
    return [np.ascontiguousarray(frames, np.float32),
            np.ascontiguousarray(before, np.float32)]


def split_calibration(split: Split, windows: np.ndarray, ctx: mx.Context
                      ) -> dict[str | int, list[np.ndarray]]:
    """Normal samples of each split network's inputs, for int8 calibration: the
    encoder's (key ``"encoder"``) are the windows' context frames
    (:func:`window_frames`); each temporal network's (keyed as ``split.temporal``) the
    fp32 encoder's features of those frames at the positions each group reads.

    Args:
        split: The split, its networks not yet built (they run here in fp32).
        windows: Normal windows (N, T, ...), the engine's calibration windows.
        ctx: Where the encoder runs.
    """
    context = split.context
    inputs = window_frames(windows, context, split.previous)
    features: list[list[np.ndarray]] = [[] for _ in split.groups]
    for w in range(len(windows)):       # a window at a time: features at S are large
        rows = slice(w * context, (w + 1) * context)
        ys = split.encoder(*[mx.nd.array(x[rows], ctx=ctx) for x in inputs])
        ys = ys if isinstance(ys, (list, tuple)) else [ys]
        for g, (group, y) in enumerate(zip(split.groups, ys, strict=True)):
            features[g].append(y.asnumpy()[list(group.positions)])
    temporal = [np.stack(f) for f in features]
    return {"encoder": inputs, **dict.fromkeys(split.temporal, temporal)}


class SplitRunner:
    """A split model's encoder and temporal networks, built by a backend over their own
    buffers: two slots, as the engine's (one filled while the other runs).

    Args:
        split: The family's split.
        frame_shape: One frame's shape (the input contract's).
        output_shapes: One window's output shape per temporal network (by its key).
        max_batch: Most windows per job.
        build: Builds each network over its buffers (the backend's).
        calibration: Normal samples of each network's inputs (:func:`split_calibration`),
            where its precision needs them (int8); None: none.
    """

    def __init__(self, split: Split, frame_shape: tuple[int, ...],
                 output_shapes: dict[int, tuple[int, ...]], max_batch: int,
                 build: NetworkFactory,
                 calibration: dict[str | int, list[np.ndarray]] | None = None) -> None:
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
        calibration = calibration or {}
        self.encoder = build(split.encoder, frames, [encoded] * 2,
                             calibration.get("encoder"))
        self.temporal = {}
        for key, net in split.temporal.items():
            outputs = [[np.zeros((max_batch, *output_shapes[key]), np.float32)]
                       for _ in slots]
            self.temporal[key] = build(net, self.inputs, outputs, calibration.get(key))

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
        if fresh:
            encoded = self.encoder.run(len(fresh), slot)
            for row, (store, key) in enumerate(fresh):
                store.put(key, encoded, row)
        inputs = self.inputs[slot]
        for i, (store, start) in enumerate(windows):
            store.gather(start, inputs, i)
        return self.temporal[outputs].run(len(windows), slot)[0]

    def outputs_of(self, windows: np.ndarray, outputs: int) -> np.ndarray:
        """The temporal network's outputs (the one that outputs ``outputs`` frames) on
        windows (N, T, ...) that share no frame, each encoded in full; a new array."""
        store = self.store(self.context)
        out = []
        for b in range(0, len(windows), self.max_batch):
            batch = windows[b:b + self.max_batch]
            frames = window_frames(batch, self.context, self.previous is not None)
            self.fresh[0][:len(frames[0])] = frames[0]
            if self.previous is not None:
                self.previous[0][:len(frames[1])] = frames[1]
            first = b * self.context
            keys = [first + k for k in range(len(frames[0]))]
            out.append(self.run([(store, k) for k in keys],
                                [(store, first + i * self.context) for i in range(len(batch))],
                                outputs, 0).copy())
        return np.concatenate(out)

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


def split_changes(runner: SplitRunner, windows: np.ndarray, outputs: int,
                  whole: Callable[[np.ndarray], np.ndarray], decide: Verdicts | None,
                  pixel_scale: float) -> int:
    """How many frames of normal ``windows`` the split decides otherwise than the whole
    network (``whole``: its outputs of windows): by ``decide``'s verdicts, or without one
    by :func:`~stream.detector.backends.policy.reconstruction_changed` (more than
    :data:`~stream.detector.backends.policy.RECON_TOLERANCE` grey level per pixel in a
    4x4 window): the check ``auto`` makes of a reduced precision against fp32."""
    reused = runner.outputs_of(windows, outputs)
    reference = whole(windows)
    if decide is None:
        return int(reconstruction_changed(reused, reference, pixel_scale).sum())
    target = windows[:, windows.shape[1] - reused.shape[1]:]
    return int((decide(reused, target) != decide(reference, target)).sum())


def build_split(family: ModelFamily, trained: HybridBlock, meta: WeightsMeta,
                ctx: mx.Context, precision: str, max_batch: int,
                output_shapes: dict[int, tuple[int, ...]],
                decode_last: int | None, backend: Backend,
                calibration: Callable[[], np.ndarray] | None = None,
                whole: Callable[[np.ndarray], np.ndarray] | None = None,
                decide: Verdicts | None = None) -> SplitRunner | None:
    """The encoder-reuse networks of a model at ``precision`` on ``backend`` (the
    engine's: its ``split_network`` builds them, where it ``supports_reuse``), or None
    where it runs whole: its family offers no split, the backend runs no split at that
    precision or cannot build this one, or (int8) the split decides otherwise than the
    whole network on the calibration windows (logged).

    Args:
        family, trained, meta, ctx, precision, max_batch, output_shapes, decode_last,
            backend: The engine's.
        calibration: The engine's normal calibration windows (N, T, ...); int8 needs
            them (calibration and the check).
        whole: The whole network's full outputs of windows at ``precision``, for the
            int8 check (None: no check).
        decide: The scorer's verdicts for that check (None: reconstructions within
            :data:`~stream.detector.backends.policy.RECON_TOLERANCE`).

    Raises:
        ValueError: If the split's temporal networks and the inference networks differ,
            or int8 has no ``calibration``.
    """
    split = family.split(trained, meta, ctx, decode_last)
    if split is None:
        return None
    if not backend.supports_reuse(precision):
        log.info("encoder reuse: %s runs whole at %s on %s (reuse runs at %s there): each "
                 "window encodes all its frames", meta.model, precision, backend.name,
                 " or ".join(backend.reuse_precisions))
        return None
    if set(split.temporal) != set(output_shapes):
        raise ValueError(f"{meta.model}: the split's temporal networks output "
                         f"{sorted(split.temporal)} frames per window, its inference "
                         f"networks {sorted(output_shapes)}; they must match")
    samples = None
    if precision == "int8":
        if calibration is None:
            raise ValueError("encoder reuse at int8 needs calibration windows")
        samples = split_calibration(split, calibration(), ctx)

    def build(net: HybridBlock, inputs: list[list[np.ndarray]],
              outputs: list[list[np.ndarray]], calibration: list[np.ndarray] | None
              ) -> SplitNetwork:
        return backend.split_network(net, inputs, outputs, ctx, precision, calibration,
                                     family.int8_fp32_layers)

    try:
        runner = SplitRunner(split, tuple(meta.contract.shape), output_shapes, max_batch,
                             build, samples)
    # a precision the backend cannot build for this split (oneDNN's "could not create a
    # primitive", an op its int8 tools cannot quantise, an int8 split far from fp32 on
    # normal inputs): the whole network still runs
    except (*backend.build_errors, Int8SplitError) as err:
        log.warning("encoder reuse: %s cannot build %s's split at %s (%s): it runs whole",
                    backend.name, meta.model, precision,
                    (str(err).strip().splitlines() or [type(err).__name__])[0])
        return None
    if precision == "int8" and whole is not None:
        full = max(output_shapes)
        changed = split_changes(runner, calibration(), full, whole, decide,
                                meta.contract.pixel_scale)
        if changed:
            log.warning("encoder reuse: %s at int8 on %s changed %d %s of the whole int8 "
                        "network's on normal windows: it runs whole", meta.model,
                        backend.name, changed, check_name(decide))
            return None
    log.info("encoder reuse: %s encodes each frame once on %s at %s (%d frames of "
             "context, %.1f MB of features per frame)", meta.model, backend.name, precision,
             runner.context, sum(4 * np.prod(g.shape) for g in split.groups) / 2**20)
    return runner
