"""The next-frame predictor as a model family: windows of T + 1 frames, of which only the
newest is scored (by its prediction error), trained on intensity, gradient and
temporal-difference losses."""

from __future__ import annotations

import mxnet as mx
from mxnet.gluon import HybridBlock

from models.family import FeatureGroup, ModelFamily, Split, Temporal, check_contract
from models.meta import WeightsMeta
from models.predictor.network import CONTEXT, FRAME_SIZE, Predictor
from models.predictor.split import split_predictor

#: Weights of the gradient and temporal-difference terms against the intensity term.
GRADIENT_WEIGHT = 1.0
TEMPORAL_WEIGHT = 1.0


def _abs_gradients(F, x):  # noqa: N803 - Gluon's F convention
    """|∂x/∂col| and |∂x/∂row| of (N, 1, S, S) frames (one pixel shorter on their axis)."""
    cols = F.abs(F.slice_axis(x, axis=3, begin=1, end=None)
                 - F.slice_axis(x, axis=3, begin=0, end=-1))
    rows = F.abs(F.slice_axis(x, axis=2, begin=1, end=None)
                 - F.slice_axis(x, axis=2, begin=0, end=-1))
    return cols, rows


def prediction_loss(pred: mx.nd.NDArray, windows: mx.nd.NDArray) -> mx.nd.NDArray:
    """Per-window loss of next-frame predictions.

    Liu et al. 2018's intensity (L2) and gradient (L1 between the absolute image
    gradients) terms, and in place of their optical-flow term an L1 loss between the
    predicted and the true motion magnitude: |x̂_t − x_{t−1}| against |x_t − x_{t−1}|. (The
    signed difference would be the intensity error again: x̂_t − x_{t−1} − (x_t − x_{t−1})
    = x̂_t − x_t.)

    Args:
        pred: (N, 1, S, S) predictions of each window's last frame.
        windows: (N, T + 1, S, S) the windows.

    Returns:
        (N,) losses.
    """
    nd = mx.nd
    t = windows.shape[1] - 1
    target = nd.slice_axis(windows, axis=1, begin=t, end=t + 1)
    prev = nd.slice_axis(windows, axis=1, begin=t - 1, end=t)
    axes = (1, 2, 3)
    intensity = nd.mean(nd.square(pred - target), axis=axes)
    (pc, pr), (tc, tr) = _abs_gradients(nd, pred), _abs_gradients(nd, target)
    gradient = nd.mean(nd.abs(pc - tc), axis=axes) + nd.mean(nd.abs(pr - tr), axis=axes)
    temporal = nd.mean(nd.abs(nd.abs(pred - prev) - nd.abs(target - prev)), axis=axes)
    return intensity + GRADIENT_WEIGHT * gradient + TEMPORAL_WEIGHT * temporal


class PredictorFamily(ModelFamily):
    """Next-frame prediction (:class:`models.predictor.Predictor`): a window is the T
    context frames and the frame they predict; one frame scored per window, one frame of
    latency, no look-back (the error of a prediction needs no earlier error)."""

    name = "predictor"
    network_class = Predictor
    #: Kept in fp32 by int8: its ConvLSTM's hidden-to-hidden and input-to-hidden
    #: convolutions, as the STAE's (:attr:`models.stae.family.STAEFamily.int8_fp32_layers`:
    #: errors that compound over the time steps, and a graph MXNet 1.9.1 cannot build).
    int8_fp32_layers = ("h2h", "i2h")

    def window(self, model_args: dict) -> int:
        return int(model_args.get("context", CONTEXT)) + 1 + bool(model_args.get("motion"))

    def temporal(self, meta: WeightsMeta) -> Temporal:
        context = int(meta.model_args.get("context", CONTEXT))
        if meta.window != self.window(meta.model_args):
            raise ValueError(f"{self.name} weights with a window of {meta.window} frames and "
                             f"a context of {context}: the window must be the context plus "
                             "the predicted frame (and one frame before them with "
                             "`motion`); retrain them")
        check_contract(self.name, meta, int(meta.model_args.get("size", FRAME_SIZE)),
                       unit_range=False)
        return Temporal(window=meta.window, scorable=1)

    def loss(self, net: HybridBlock, windows: mx.nd.NDArray) -> mx.nd.NDArray:
        return prediction_loss(net(windows), windows)

    def split(self, trained: HybridBlock, meta: WeightsMeta, ctx: mx.Context,
              outputs: int | None = None) -> Split | None:
        """The per-frame encoder (the ConvLSTM's input-to-hidden term of every context
        frame; the newest context frame's own features for the decoder's skips) and the
        recurrence with the decoder (:mod:`models.predictor.split`). With a motion input
        the encoder also reads each frame's predecessor, and the context starts at the
        window's second frame (the first is the first context frame's predecessor)."""
        if not isinstance(trained, Predictor):
            return None
        encoder, temporal = split_predictor(trained, ctx)
        t, m = trained.context, int(trained.motion)
        outs = encoder(*[mx.nd.zeros((1, *meta.contract.shape), ctx=ctx)] * (1 + m))
        return Split(encoder, {1: temporal},
                     (FeatureGroup(tuple(outs[0].shape[1:]), tuple(range(m, t + m))),
                      *(FeatureGroup(tuple(o.shape[1:]), (t + m - 1,)) for o in outs[1:])),
                     previous=trained.motion)
