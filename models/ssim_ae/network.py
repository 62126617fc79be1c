"""The SSIM autoencoder of the surface-inspection documents: dilated convolutions in the
encoder widen what each code cell sees without more down-sampling."""

from __future__ import annotations

from mxnet.gluon import HybridBlock, nn

#: Frame side the shipped conveyor weights use.
FRAME_SIZE = 128
#: Down-sampling steps between the input and the code (each halves the side).
STEPS = 4


class SSIMAutoencoder(HybridBlock):
    """One image in, its reconstruction out, through a narrow spatial code.

    Encoder: four stride-2 3×3 convolutions (``channels``·1, 2, 4, 4; 128 → 8 px), each
    of the first three followed by 3×3 convolutions dilated 2 and 4 (the dilated context),
    then a 1×1 convolution to ``code`` channels: the code is ``code``×(S/16)×(S/16).
    Decoder: a 1×1 convolution back, then four nearest ×2 up-samplings each followed by a
    3×3 convolution, and a 3×3 convolution to one channel through a sigmoid. LeakyReLU
    (0.2) throughout, batch normalisation after each hidden convolution.

    Input and output: (N, 1, S, S) in [0, 1] (contract mean 0, std 1).

    Args:
        size: Image side S, a multiple of 16 (the input contract's size).
        channels: Channels of the first convolution.
        code: Channels of the code.
    """

    def __init__(self, size: int = FRAME_SIZE, channels: int = 32, code: int = 16,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if size % 2 ** STEPS or size < 2 ** STEPS:
            raise ValueError(f"the SSIM autoencoder needs an image side that is a multiple "
                             f"of {2 ** STEPS}, got {size}")
        if channels < 1 or code < 1:
            raise ValueError(f"channels and code must be positive, got {channels} and {code}")
        self.size = size
        widths = [channels, channels * 2, channels * 4, channels * 4]
        with self.name_scope():
            self.encoder = nn.HybridSequential(prefix="enc_")
            with self.encoder.name_scope():
                for i, width in enumerate(widths):
                    self.encoder.add(*_conv(width, stride=2))
                    if i < STEPS - 1:
                        self.encoder.add(*_conv(width, dilation=2), *_conv(width, dilation=4))
                self.encoder.add(nn.Conv2D(code, 1))
            self.decoder = nn.HybridSequential(prefix="dec_")
            with self.decoder.name_scope():
                self.decoder.add(*_conv(widths[-1], kernel=1))
                for width in reversed(widths):
                    self.decoder.add(_Upsample(), *_conv(width))
                self.decoder.add(nn.Conv2D(1, 3, padding=1))

    def hybrid_forward(self, F, x):  # noqa: N803 - Gluon's F convention
        """Reconstruct images: (N, 1, S, S) in [0, 1] to the same."""
        return F.sigmoid(self.decoder(self.encoder(x)))


def _conv(width: int, kernel: int = 3, stride: int = 1, dilation: int = 1) -> list:
    """A convolution keeping the side (or halving it at stride 2), batch norm, LeakyReLU."""
    return [nn.Conv2D(width, kernel, strides=stride, padding=dilation * (kernel // 2),
                      dilation=dilation, use_bias=False),
            nn.BatchNorm(), nn.LeakyReLU(0.2)]


class _Upsample(HybridBlock):
    """Nearest-neighbour up-sampling ×2."""

    def hybrid_forward(self, F, x):  # noqa: N803 - Gluon's F convention
        return F.UpSampling(x, scale=2, sample_type="nearest")
