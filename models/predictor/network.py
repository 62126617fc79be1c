"""A ConvLSTM next-frame predictor (after Liu et al. 2018 and Lu et al. 2019) as a Gluon
HybridBlock.

Frames t−T..t−1 go through a per-frame convolutional encoder; a convolutional LSTM runs
over their coarsest features; a decoder up-samples its last state, with skip connections
from frame t−1's encoder features at every scale, to the change from frame t−1 to frame
t. The prediction is x_{t−1} plus that change. The last convolution starts at zero, so an
untrained network predicts exactly "nothing moves" (its error is the frame difference) and
training can only teach it how normal footage moves. Skip connections help a predictor (the
last frame's detail is the best guess of the next one's) where they would let a
reconstructor copy its input.

With ``motion`` on, each context frame is encoded together with its difference from the
frame before it (two input channels, a window one frame longer): the encoder sees each
frame independently and the ConvLSTM runs at S/8, so without it the decoder's skips carry
no motion finer than 8 pixels.
"""

from __future__ import annotations

from mxnet.gluon import HybridBlock, nn

from models.stae.convlstm import ConvLSTM

#: Frame side (a multiple of 8: three stride-2 convolutions).
FRAME_SIZE = 128
#: Context frames (T) the prediction of the next one reads.
CONTEXT = 4


def _conv(channels: int, in_channels: int, stride: int = 1) -> nn.Conv2D:
    return nn.Conv2D(channels, 3, strides=stride, padding=1, in_channels=in_channels)


class Predictor(HybridBlock):
    """Predicts frame t from frames t−T..t−1.

    Encoder per frame: Conv 3×3 ×c0 at S, then three 3×3 stride-2 convolutions to c1 at
    S/2, c2 at S/4 and c3 at S/8 (leaky ReLU). A ConvLSTM (``hidden`` channels, 3×3) runs
    over the T frames' S/8 features. Decoder: nearest up-sampling ×2, concatenation with
    frame t−1's features at that scale, Conv 3×3 (leaky ReLU), three times, and a last Conv
    3×3 to one channel: the predicted change, added to frame t−1.

    Input: (N, T + 1, S, S), a window whose last frame is the one predicted; the network
    never reads it (the window is the detector's, so the target travels with it). With
    ``motion``, (N, T + 2, S, S): one frame more at the start, the first context frame's
    predecessor. Output: (N, 1, S, S), the prediction of that last frame, in input units.

    Args:
        context: Context frames T.
        size: Frame side S, a multiple of 8; the input contract's size.
        channels: Encoder channels (c0, c1, c2, c3); the decoder mirrors them.
        hidden: Channels of the ConvLSTM's state.
        motion: Encode each context frame with its difference from the frame before it.
    """

    def __init__(self, context: int = CONTEXT, size: int = FRAME_SIZE,
                 channels: tuple[int, int, int, int] = (16, 32, 64, 64), hidden: int = 64,
                 motion: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        if context < 1:
            raise ValueError(f"context must be at least 1 frame, got {context}")
        if size < 16 or size % 8:
            raise ValueError(f"the predictor needs a frame side that is a multiple of 8 and at "
                             f"least 16 (three stride-2 convolutions), got {size}")
        if len(channels) != 4 or min(channels) < 1 or hidden < 1:
            raise ValueError(f"channels takes 4 positive values and hidden 1, got {channels} "
                             f"and {hidden}")
        self.context = context
        self.size = size
        self.motion = bool(motion)
        c0, c1, c2, c3 = channels
        with self.name_scope():
            self.enc0 = _conv(c0, 1 + self.motion)
            self.enc1 = _conv(c1, c0, 2)
            self.enc2 = _conv(c2, c1, 2)
            self.enc3 = _conv(c3, c2, 2)
            self.lstm = ConvLSTM(c3, hidden, context, prefix="lstm_")
            self.dec2 = _conv(c2, hidden + c2)
            self.dec1 = _conv(c1, c2 + c1)
            self.dec0 = _conv(c0, c1 + c0)
            # Zero-initialised: an untrained network predicts exactly "nothing moves".
            self.out = nn.Conv2D(1, 3, padding=1, in_channels=c0, weight_initializer="zeros")

    def hybrid_forward(self, F, x):  # noqa: N803 - Gluon's F convention
        """Predict each window's last frame from the ones before it.

        Args:
            x: (N, T + 1, S, S) windows ((N, T + 2, S, S) with ``motion``).

        Returns:
            (N, 1, S, S) predictions of frame T (the last).
        """
        def act(y):
            return F.LeakyReLU(y, slope=0.2)

        t, m = self.context, int(self.motion)
        past = F.slice_axis(x, axis=1, begin=m, end=t + m)          # (N, T, S, S): causal
        last = F.slice_axis(x, axis=1, begin=t + m - 1, end=t + m)   # (N, 1, S, S)
        frames = F.reshape(past, shape=(-1, 1, 0, 0))                # (N*T, 1, S, S)
        if m:                                                       # each frame's change
            before = F.slice_axis(x, axis=1, begin=0, end=t)
            frames = F.concat(frames, frames - F.reshape(before, shape=(-1, 1, 0, 0)), dim=1)
        f0 = act(self.enc0(frames))                                 # (N*T, c0, S, S)
        f1 = act(self.enc1(f0))                                     # S/2
        f2 = act(self.enc2(f1))                                     # S/4
        f3 = act(self.enc3(f2))                                     # S/8
        h = self.lstm(F.reshape(f3, shape=(-4, -1, t, -2)))         # (N, T, hidden, S/8, S/8)
        h = F.squeeze(F.slice_axis(h, axis=1, begin=t - 1, end=t), axis=1)

        def newest(f):                                              # frame t−1's features
            f = F.reshape(f, shape=(-4, -1, t, -2))
            return F.squeeze(F.slice_axis(f, axis=1, begin=t - 1, end=t), axis=1)

        y = h
        for dec, skip in ((self.dec2, f2), (self.dec1, f1), (self.dec0, f0)):
            y = F.UpSampling(y, scale=2, sample_type="nearest")
            y = act(dec(F.concat(y, newest(skip), dim=1)))
        return last + self.out(y)
