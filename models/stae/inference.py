"""The STAE in inference form: the trained weights rearranged for oneDNN.

Same outputs as :class:`models.stae.STAE` (to float rounding, ~1e-5), from a graph in which
every layer is an ordinary convolution whose activation oneDNN fuses into it
(``optimize_for(backend="MKLDNN")``):

- ``tanh(x) = 2·sigmoid(2x) − 1`` wherever the ``2·s − 1`` can be folded into the next
  layer's weights: oneDNN 2.4's ``tanh`` costs four times its ``sigmoid`` on AVX2;
- the two transposed convolutions become phase convolutions (:mod:`models.stae.phases`): the
  first one's four stride phases are one convolution, and the second one reads those
  phases directly, so the 55×55 intermediate image is never interleaved; one
  one-multiply-per-pixel transposed convolution interleaves the final 8×8 phases;
- each ConvLSTM step computes its own input-to-hidden term, and a layer hands the next its
  steps one by one (:class:`models.stae.convlstm.InferenceConvLSTM`): no whole sequence is
  converted out of oneDNN's blocked layout to be split into steps;
- only the first of the training network's two output channels is computed;
- what border effects these rewrites change does not depend on the input, so one
  precomputed (227×227) map added at the end restores them exactly.
"""

from __future__ import annotations

import mxnet as mx
import numpy as np
from mxnet.gluon import HybridBlock

from models.stae.convlstm import InferenceConvLSTM, fold_convlstm, i2h_term
from models.stae.network import FRAME_SIZE, STAE
from models.stae.phases import compose_over_phases, interleave_kernel, phase_kernels

_ENCODER = ((11, 4), (5, 2))    # (kernel, stride) of the two encoder convolutions
_DECODER = ((5, 2), (11, 4))    # and of the two transposed convolutions


def _out(size: int, kernel: int, stride: int, pad: int = 0) -> int:
    return (size + 2 * pad - kernel) // stride + 1


def _spatial(F, x, weights, c1: int, c2: int):  # noqa: N803
    """The spatial encoder, frame by frame: (M, 227, 227) frames → (M, c2, 26, 26)."""
    enc1_weight, enc1_bias, enc2_weight, enc2_bias = weights
    (k1, st1), (k2, st2) = _ENCODER
    z = F.expand_dims(x, axis=1)
    z = F.Activation(F.Convolution(z, enc1_weight, enc1_bias, kernel=(k1, k1),
                                   stride=(st1, st1), num_filter=c1, name="enc1"),
                     act_type="sigmoid")
    return F.Activation(F.Convolution(z, enc2_weight, enc2_bias, kernel=(k2, k2),
                                      stride=(st2, st2), num_filter=c2, name="enc2"),
                        act_type="tanh")


class InferenceSTAE(HybridBlock):
    """:class:`models.stae.STAE` for inference; build it with :func:`inference_form`.

    Input: (N, T, 227, 227), as the STAE's; output: the reconstruction of the last
    ``decode_last`` frames of each window, (N, decode_last, 227, 227). A live detector
    scores only a window's newest frames, so the decoder need not run on the others.

    Args:
        window: Frames per window (T).
        spatial_channels: Channels of the two encoder convolutions.
        temporal_channels: Hidden channels of the three ConvLSTMs.
        decode_last: Frames reconstructed per window, the newest (None: all T).
        encoded: Whether windows come as their frames' encoding (:class:`STAEEncoder`),
            not as frames: the temporal part of a split network, whose live detector
            encodes each frame once however many windows it falls in.
    """

    def __init__(self, window: int = 10, spatial_channels: tuple[int, int] = (128, 64),
                 temporal_channels: tuple[int, int, int] = (64, 32, 64),
                 decode_last: int | None = None, encoded: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        if decode_last is not None and not 1 <= decode_last <= window:
            raise ValueError(f"decode_last must be 1..{window} (the window), got {decode_last}")
        self.window = window
        self.decode_last = decode_last or window
        self._encoded = encoded
        self._args = (window, spatial_channels, temporal_channels)
        c1, c2 = spatial_channels
        t1, t2, t3 = temporal_channels
        (k1, _), (k2, _) = _ENCODER
        (d1, s1), (d2, s2) = _DECODER
        self._c1, self._c2 = c1, c2
        self._taps1 = -(-d1 // s1)                               # phase taps, first deconv
        self._block = s1 * s2
        taps2 = -(-d2 // s2)
        probe, self._pad2 = compose_over_phases(np.zeros((s2 * s2, 1, taps2, taps2)), s1, s2)
        self._taps2 = probe.shape[-1]
        with self.name_scope():
            get = self.params.get
            if not encoded:
                self.enc1_weight = get("enc1_weight", shape=(c1, 1, k1, k1))
                self.enc1_bias = get("enc1_bias", shape=(c1,))
                self.enc2_weight = get("enc2_weight", shape=(c2, c1, k2, k2))
                self.enc2_bias = get("enc2_bias", shape=(c2,))
            self.lstm1 = InferenceConvLSTM(c2, t1, window, encoded=encoded, stack=False,
                                           prefix="lstm1_")
            self.lstm2 = InferenceConvLSTM(t1, t2, window, stack=False, stepwise=True,
                                           prefix="lstm2_")
            self.lstm3 = InferenceConvLSTM(t2, t3, window, stack=False, stepwise=True,
                                           prefix="lstm3_")
            self.dec1_weight = get("dec1_weight",
                                   shape=(s1 * s1 * c1, t3, self._taps1, self._taps1))
            self.dec1_bias = get("dec1_bias", shape=(s1 * s1 * c1,))
            self.dec2_weight = get("dec2_weight", shape=(self._block ** 2, s1 * s1 * c1,
                                                         self._taps2, self._taps2))
            self.interleave_weight = get("interleave_weight",
                                         shape=(self._block ** 2, 1, self._block, self._block),
                                         grad_req="null")
            self.border = get("border", shape=(1, 1, FRAME_SIZE, FRAME_SIZE), grad_req="null")

    def decode(self, F, z, dec1_weight, dec1_bias, dec2_weight, interleave_weight):  # noqa: N803
        """The decoder without its border map: (M, t3, 26, 26) → (M, 1, 227, 227)."""
        k1, k2 = (self._taps1,) * 2, (self._taps2,) * 2
        phases = F.Activation(F.Convolution(z, dec1_weight, dec1_bias, kernel=k1,
                                            pad=(self._taps1 - 1,) * 2,
                                            num_filter=4 * self._c1, name="dec1"),
                              act_type="sigmoid")
        y = F.Convolution(phases, dec2_weight, kernel=k2, pad=(self._pad2,) * 2,
                          num_filter=self._block ** 2, no_bias=True, name="dec2")
        y = F.Deconvolution(y, interleave_weight, kernel=(self._block,) * 2,
                            stride=(self._block,) * 2, num_filter=1, no_bias=True)
        return F.slice(y, begin=(None, None, 0, 0), end=(None, None, FRAME_SIZE, FRAME_SIZE))

    def hybrid_forward(self, F, x, dec1_weight, dec1_bias, dec2_weight,  # noqa: N803
                       interleave_weight, border, enc1_weight=None, enc1_bias=None,
                       enc2_weight=None, enc2_bias=None):
        """Reconstruct windows: (N, T, 227, 227) → (N, decode_last, 227, 227); if
        ``encoded``, from the first ConvLSTM's input-to-hidden term of each frame,
        (N, T, 4·t1, 26, 26), as :class:`STAEEncoder` computes it."""
        if self._encoded:
            z = x
        else:
            weights = (enc1_weight, enc1_bias, enc2_weight, enc2_bias)
            z = _spatial(F, F.reshape(x, shape=(-3, -2)), weights, self._c1, self._c2)
            z = F.reshape(z, shape=(-4, -1, self.window, -2))
        steps = self.lstm3(*self.lstm2(*self.lstm1(z)))   # the T steps, layer by layer
        z = F.stack(*steps[self.window - self.decode_last:], axis=1)
        y = self.decode(F, F.reshape(z, shape=(-3, -2)), dec1_weight, dec1_bias, dec2_weight,
                        interleave_weight)
        return F.reshape(F.broadcast_add(y, border), shape=(-1, self.decode_last, 0, 0))

    def tail(self, decode_last: int) -> InferenceSTAE:
        """The same network (sharing these parameters) reconstructing only the newest
        ``decode_last`` frames of each window."""
        return InferenceSTAE(*self._args, decode_last=decode_last, encoded=self._encoded,
                             prefix=self.prefix, params=self.collect_params())

    def temporal(self, decode_last: int | None = None) -> InferenceSTAE:
        """The same network (sharing these parameters) from :class:`STAEEncoder`'s
        per-frame encoding, reconstructing the newest ``decode_last`` frames (None: as
        this one)."""
        return InferenceSTAE(*self._args, decode_last=decode_last or self.decode_last,
                             encoded=True, prefix=self.prefix, params=self.collect_params())

    def encoder(self) -> STAEEncoder:
        """This network's per-frame encoder (sharing its parameters)."""
        return STAEEncoder(self, prefix=self.prefix, params=self.collect_params())


class STAEEncoder(HybridBlock):
    """The per-frame part of an :class:`InferenceSTAE`: the spatial encoder and the first
    ConvLSTM's input-to-hidden convolution, which read one frame each and no state.

    Input: (M, 227, 227) frames; output: (M, 4·t1, 26, 26), what
    :meth:`InferenceSTAE.temporal`'s network reads per frame. Build it with
    :meth:`InferenceSTAE.encoder`.
    """

    def __init__(self, full: InferenceSTAE, **kwargs) -> None:
        super().__init__(**kwargs)
        c1, c2 = full._c1, full._c2
        self._channels = (c1, c2)
        self._lstm = (full.lstm1._hidden, full.lstm1._kernel)
        (k1, _), (k2, _) = _ENCODER
        hidden, k = self._lstm
        with self.name_scope():
            get = self.params.get
            self.enc1_weight = get("enc1_weight", shape=(c1, 1, k1, k1))
            self.enc1_bias = get("enc1_bias", shape=(c1,))
            self.enc2_weight = get("enc2_weight", shape=(c2, c1, k2, k2))
            self.enc2_bias = get("enc2_bias", shape=(c2,))
            self.lstm1_i2h_weight = get("lstm1_i2h_weight", shape=(4 * hidden, c2, k, k))
            self.lstm1_bias = get("lstm1_bias", shape=(4 * hidden,))

    def hybrid_forward(self, F, x, enc1_weight, enc1_bias, enc2_weight, enc2_bias,  # noqa: N803
                       lstm1_i2h_weight, lstm1_bias):
        z = _spatial(F, x, (enc1_weight, enc1_bias, enc2_weight, enc2_bias), *self._channels)
        return i2h_term(F, z, lstm1_i2h_weight, lstm1_bias, *self._lstm)


def inference_form(net: STAE, ctx: mx.Context | None = None) -> InferenceSTAE:
    """The inference form of a trained STAE, with its weights rearranged.

    Args:
        net: A trained (initialised) STAE.
        ctx: Context of the new parameters (default: that of ``net``'s).

    Returns:
        An :class:`InferenceSTAE`, not hybridized.
    """
    p = {name[len(net.prefix):]: param.data().asnumpy()
         for name, param in net.collect_params().items()}
    ctx = ctx or next(iter(net.collect_params().values())).list_ctx()[0]
    c1 = p["enc_conv0_weight"].shape[0]
    c2 = p["enc_conv1_weight"].shape[0]
    hidden = tuple(p[f"lstm{i}_h2h_weight"].shape[1] for i in (1, 2, 3))
    out = InferenceSTAE(net.window, (c1, c2), hidden)
    out.initialize(ctx=ctx)
    q = {name[len(out.prefix):]: param for name, param in out.collect_params().items()}

    values = {}
    # encoder: sigmoid(2x) after the first convolution; the second reads 2s − 1 (no padding)
    values["enc1_weight"] = 2 * p["enc_conv0_weight"]
    values["enc1_bias"] = 2 * p["enc_conv0_bias"]
    values["enc2_weight"] = 2 * p["enc_conv1_weight"]
    values["enc2_bias"] = p["enc_conv1_bias"] - p["enc_conv1_weight"].sum(axis=(1, 2, 3))
    for i in (1, 2, 3):
        folded = fold_convlstm(*(p[f"lstm{i}_{k}"] for k in
                                 ("i2h_weight", "h2h_weight", "i2h_bias", "h2h_bias")))
        values.update({f"lstm{i}_{k}": v for k, v in folded.items()})
    (_, s1), (_, s2) = _DECODER
    # first transposed convolution: its stride phases, sigmoid(2x) for tanh
    values["dec1_weight"] = 2 * phase_kernels(p["dec_conv0_weight"], s1)
    values["dec1_bias"] = 2 * np.tile(p["dec_conv0_bias"], s1 * s1)
    # second: its phases, reading the first one's phases (2s − 1); output channel 0 only
    second = phase_kernels(p["dec_conv1_weight"][:, :1], s2)
    values["dec2_weight"] = 2 * compose_over_phases(second, s1, s2)[0]
    values["interleave_weight"] = interleave_kernel(s1 * s2)
    for name, value in values.items():
        q[name].set_data(mx.nd.array(value, ctx=ctx))

    # The border map: what the rewrites change does not depend on the input, so the
    # difference of the two decoders on any input (zeros here) restores it.
    side = _out(_out(FRAME_SIZE, *_ENCODER[0]), *_ENCODER[1])      # 26
    z = mx.nd.zeros((1, hidden[2], side, side), ctx=ctx)
    true = net.decoder(z)[:, :1]
    fast = out.decode(mx.nd, z, *(q[k].data() for k in
                                  ("dec1_weight", "dec1_bias", "dec2_weight",
                                   "interleave_weight")))
    q["border"].set_data(true - fast)
    return out
