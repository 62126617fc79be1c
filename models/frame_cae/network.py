"""The seed notebook's per-frame convolutional autoencoder as a Gluon HybridBlock."""

from __future__ import annotations

from mxnet.gluon import HybridBlock, nn

#: Frame side of the notebook (100×100 frames).
FRAME_SIZE = 100
#: Kernel of every (transposed) convolution.
KERNEL = 5


def code_side(size: int) -> int:
    """Side of the feature map at the bottleneck for ``size``×``size`` frames: two
    valid 5×5 convolutions each followed by 2×2 max-pooling (100 -> 96 -> 48 -> 44 -> 22).

    Raises:
        ValueError: If the decoder cannot give back exactly ``size`` (the side must be a
            multiple of 4, at least 16).
    """
    if size < 16 or size % 4:
        raise ValueError(f"the frame CAE needs a frame side that is a multiple of 4 and at "
                         f"least 16 (the notebook's is {FRAME_SIZE}), got {size}")
    return ((size - KERNEL + 1) // 2 - KERNEL + 1) // 2


class FrameCAE(HybridBlock):
    """One frame in, its reconstruction out.

    Encoder: Conv 5×5 ×C (ReLU), MaxPool 2×2, Conv 5×5 ×C (ReLU), MaxPool 2×2, Dense
    ``bottleneck``. Decoder: Dense back to C×22×22 (for 100×100 frames; ReLU), nearest
    up-sampling ×2, Deconv 5×5 ×C (ReLU), nearest up-sampling ×2, Deconv 5×5 ×1, sigmoid.

    Input and output: (N, 1, S, S), the window of one frame as its only channel, in
    [0, 1] (the sigmoid's range: an input contract with mean 0 and std 1).

    Args:
        size: Frame side S (the notebook: 100); the input contract's size.
        channels: Channels of every convolution (the notebook: 32).
        bottleneck: Units of the dense code (the notebook: 2,000).
    """

    def __init__(self, size: int = FRAME_SIZE, channels: int = 32, bottleneck: int = 2000,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if channels < 1 or bottleneck < 1:
            raise ValueError(f"channels and bottleneck must be positive, got {channels} and "
                             f"{bottleneck}")
        self.size = size
        self.channels = channels
        self.side = code_side(size)
        code = channels * self.side * self.side
        with self.name_scope():
            self.encoder = nn.HybridSequential(prefix="enc_")
            with self.encoder.name_scope():
                self.encoder.add(
                    nn.Conv2D(channels, KERNEL, activation="relu", in_channels=1),
                    nn.MaxPool2D(2),
                    nn.Conv2D(channels, KERNEL, activation="relu", in_channels=channels),
                    nn.MaxPool2D(2),
                    nn.Dense(bottleneck, in_units=code))
            self.expand = nn.Dense(code, activation="relu", in_units=bottleneck,
                                   prefix="expand_")
            self.deconv1 = nn.Conv2DTranspose(channels, KERNEL, activation="relu",
                                              in_channels=channels, prefix="deconv1_")
            # Two output channels, of which the second is discarded: MXNet 1.9.1's oneDNN
            # fails on the data gradient of a one-channel Deconvolution in training (as
            # for the STAE, see models/stae/network.py).
            self.deconv2 = nn.Conv2DTranspose(2, KERNEL, in_channels=channels,
                                              prefix="deconv2_")

    def hybrid_forward(self, F, x):  # noqa: N803 - Gluon's F convention
        """Reconstruct frames.

        Args:
            x: (N, 1, S, S) frames.

        Returns:
            (N, 1, S, S) reconstruction in [0, 1].
        """
        z = self.expand(self.encoder(x))
        z = F.reshape(z, shape=(0, self.channels, self.side, self.side))
        z = self.deconv1(F.UpSampling(z, scale=2, sample_type="nearest"))
        y = self.deconv2(F.UpSampling(z, scale=2, sample_type="nearest"))
        return F.sigmoid(F.slice_axis(y, axis=1, begin=0, end=1))
