"""The next-frame predictor split for a live detector: a per-frame encoder and a
temporal part on its cached outputs, so that each frame is encoded once although, at
stride 1, it is a context frame of T windows.

Same outputs as :class:`models.predictor.Predictor` to float rounding (~1e-6): the
ConvLSTM runs in :class:`models.stae.convlstm.InferenceConvLSTM`'s fused form, its
input-to-hidden convolution (which reads one frame and no state) in the encoder.
"""

from __future__ import annotations

import mxnet as mx
from mxnet.gluon import HybridBlock, nn

from models.predictor.network import Predictor
from models.stae.convlstm import InferenceConvLSTM, fold_convlstm, i2h_term


def _conv(channels: int, in_channels: int, stride: int = 1) -> nn.Conv2D:
    return nn.Conv2D(channels, 3, strides=stride, padding=1, in_channels=in_channels)


def _act(F, y):  # noqa: N803
    return F.LeakyReLU(y, slope=0.2)


class PredictorEncoder(HybridBlock):
    """Frames (M, S, S) to their five per-frame outputs: the ConvLSTM's input-to-hidden
    term (M, 4·hidden, S/8, S/8), then the frame's encoder features at S/4, S/2 and S and
    the frame itself (M, 1, S, S), which the decoder reads of a window's newest context
    frame. With ``motion``, a second input: each frame's predecessor (M, S, S)."""

    def __init__(self, channels: tuple[int, int, int, int], hidden: int,
                 motion: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        c0, c1, c2, c3 = channels
        self._hidden = hidden
        self._motion = motion
        with self.name_scope():
            self.enc0 = _conv(c0, 1 + motion)
            self.enc1 = _conv(c1, c0, 2)
            self.enc2 = _conv(c2, c1, 2)
            self.enc3 = _conv(c3, c2, 2)
            self.i2h_weight = self.params.get("i2h_weight", shape=(4 * hidden, c3, 3, 3))
            self.bias = self.params.get("bias", shape=(4 * hidden,))

    def hybrid_forward(self, F, x, previous=None, i2h_weight=None, bias=None):  # noqa: N803
        frame = F.expand_dims(x, axis=1)
        inputs = frame
        if self._motion:            # the frame, then its predecessor: read in input order
            inputs = F.concat(frame, frame - F.expand_dims(previous, axis=1), dim=1)
        f0 = _act(F, self.enc0(inputs))
        f1 = _act(F, self.enc1(f0))
        f2 = _act(F, self.enc2(f1))
        f3 = _act(F, self.enc3(f2))
        return i2h_term(F, f3, i2h_weight, bias, self._hidden, 3), f2, f1, f0, frame


class PredictorTemporal(HybridBlock):
    """The ConvLSTM's recurrence over T context frames' input-to-hidden terms and the
    decoder with its skip connections from the newest one: inputs as
    :class:`PredictorEncoder`'s outputs, (N, T, ...) for the first and (N, 1, ...) for
    the others; output (N, 1, S, S), the prediction of the frame after them."""

    def __init__(self, context: int, channels: tuple[int, int, int, int], hidden: int,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        c0, c1, c2, c3 = channels
        self._context = context
        with self.name_scope():
            self.lstm = InferenceConvLSTM(c3, hidden, context, encoded=True, prefix="lstm_")
            self.dec2 = _conv(c2, hidden + c2)
            self.dec1 = _conv(c1, c2 + c1)
            self.dec0 = _conv(c0, c1 + c0)
            self.out = nn.Conv2D(1, 3, padding=1, in_channels=c0)

    def hybrid_forward(self, F, i2h, f2, f1, f0, frame):  # noqa: N803
        # Inputs are used in their order: MXNet 1.9.1's optimize_for binds a graph's
        # inputs by the order it first reads them, not by name.
        t = self._context
        h = F.squeeze(F.slice_axis(self.lstm(i2h), axis=1, begin=t - 1, end=t), axis=1)
        y = h
        for dec, skip in ((self.dec2, f2), (self.dec1, f1), (self.dec0, f0)):
            y = F.UpSampling(y, scale=2, sample_type="nearest")
            y = _act(F, dec(F.concat(y, F.squeeze(skip, axis=1), dim=1)))
        return self.out(y) + F.squeeze(frame, axis=1)


def split_predictor(net: Predictor, ctx: mx.Context) -> tuple[PredictorEncoder,
                                                              PredictorTemporal]:
    """A trained predictor's encoder and temporal part, with its weights (copied)."""
    p = {name[len(net.prefix):]: param.data().asnumpy()
         for name, param in net.collect_params().items()}
    channels = tuple(b.weight.shape[0] for b in (net.enc0, net.enc1, net.enc2, net.enc3))
    hidden = p["lstm_h2h_weight"].shape[1]
    encoder = PredictorEncoder(channels, hidden, net.motion)
    temporal = PredictorTemporal(net.context, channels, hidden)
    folded = fold_convlstm(*(p[f"lstm_{k}"] for k in
                             ("i2h_weight", "h2h_weight", "i2h_bias", "h2h_bias")))
    pairs = [(encoder.enc0, net.enc0), (encoder.enc1, net.enc1), (encoder.enc2, net.enc2),
             (encoder.enc3, net.enc3), (temporal.dec2, net.dec2), (temporal.dec1, net.dec1),
             (temporal.dec0, net.dec0), (temporal.out, net.out)]
    for block in (encoder, temporal):
        block.initialize(ctx=ctx)
    for ours, theirs in pairs:
        ours.weight.set_data(theirs.weight.data().as_in_context(ctx))
        ours.bias.set_data(theirs.bias.data().as_in_context(ctx))
    encoder.i2h_weight.set_data(mx.nd.array(folded["i2h_weight"], ctx=ctx))
    encoder.bias.set_data(mx.nd.array(folded["bias"], ctx=ctx))
    temporal.lstm.h2h_weight.set_data(mx.nd.array(folded["h2h_weight"], ctx=ctx))
    return encoder, temporal
