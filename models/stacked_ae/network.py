"""The seed notebook's stacked-frame spatio-temporal autoencoder (its ``convSTAE``, after
Hasan et al. 2016) as a Gluon HybridBlock."""

from __future__ import annotations

from mxnet.gluon import HybridBlock, nn

#: Frame side of the notebook and of Hasan et al. (227×227).
FRAME_SIZE = 227
#: Frames per window (T) of the notebook.
WINDOW = 10


def feature_sides(size: int) -> tuple[int, int, int, int, int]:
    """Sides of the encoder's feature maps for ``size``×``size`` frames: Conv 15×15/4,
    MaxPool 2×2, Conv 4×4, MaxPool 2×2, Conv 3×3 (227 -> 54 -> 27 -> 24 -> 12 -> 10).

    Raises:
        ValueError: If the mirrored decoder cannot give back exactly ``size`` (every
            convolution must tile its input and every pooling halve an even side).
    """
    first = (size - 15) // 4 + 1
    sides = (first, first // 2, first // 2 - 3, (first // 2 - 3) // 2, (first // 2 - 3) // 2 - 2)
    exact = (size - 15) % 4 == 0 and first % 2 == 0 and sides[2] % 2 == 0 and sides[4] >= 1
    if not exact:
        raise ValueError(f"the stacked-frame AE needs a frame side of 83 + 16k (83, 99, ..., "
                         f"{FRAME_SIZE}, ...) for its decoder to mirror the encoder exactly; "
                         f"got {size}")
    return sides


class StackedAE(HybridBlock):
    """A window of T frames stacked as channels, reconstructed as a whole.

    Encoder: Conv 15×15/4 ×C1 (ReLU), batch norm, MaxPool 2×2, Conv 4×4 ×C2 (ReLU),
    batch norm, MaxPool 2×2, Conv 3×3 ×C3 (ReLU), batch norm. Decoder, mirrored:
    Deconv 3×3 ×C2 (ReLU), batch norm, nearest up-sampling ×2, Deconv 4×4 ×C1 (ReLU),
    batch norm, nearest up-sampling ×2, Deconv 15×15/4 ×T, sigmoid.

    Input and output: (N, T, S, S) in [0, 1] (the sigmoid's range: an input contract with
    mean 0 and std 1).

    Args:
        window: Frames per window (T), the input and output channels (the notebook: 10).
        channels: C1, C2, C3 (the notebook: 512, 256, 128).
        size: Frame side S (the notebook: 227); the input contract's size.
    """

    def __init__(self, window: int = WINDOW, channels: tuple[int, int, int] = (512, 256, 128),
                 size: int = FRAME_SIZE, **kwargs) -> None:
        super().__init__(**kwargs)
        if window < 1:
            raise ValueError(f"window must be at least 1 frame, got {window}")
        if len(channels) != 3 or min(channels) < 1:
            raise ValueError(f"channels takes 3 positive values, got {channels}")
        feature_sides(size)
        self.window = window
        self.size = size
        c1, c2, c3 = channels
        with self.name_scope():
            self.encoder = nn.HybridSequential(prefix="enc_")
            with self.encoder.name_scope():
                self.encoder.add(
                    nn.Conv2D(c1, 15, strides=4, activation="relu", in_channels=window),
                    nn.BatchNorm(in_channels=c1),
                    nn.MaxPool2D(2),
                    nn.Conv2D(c2, 4, activation="relu", in_channels=c1),
                    nn.BatchNorm(in_channels=c2),
                    nn.MaxPool2D(2),
                    nn.Conv2D(c3, 3, activation="relu", in_channels=c2),
                    nn.BatchNorm(in_channels=c3))
            self.deconv1 = nn.Conv2DTranspose(c2, 3, activation="relu", in_channels=c3,
                                              prefix="deconv1_")
            self.norm1 = nn.BatchNorm(in_channels=c2, prefix="norm1_")
            self.deconv2 = nn.Conv2DTranspose(c1, 4, activation="relu", in_channels=c2,
                                              prefix="deconv2_")
            self.norm2 = nn.BatchNorm(in_channels=c1, prefix="norm2_")
            # At least two output channels: MXNet 1.9.1's oneDNN fails on the data
            # gradient of a one-channel Deconvolution in training (see the STAE).
            self.deconv3 = nn.Conv2DTranspose(max(window, 2), 15, strides=4, in_channels=c1,
                                              prefix="deconv3_")

    def hybrid_forward(self, F, x):  # noqa: N803 - Gluon's F convention
        """Reconstruct windows.

        Args:
            x: (N, T, S, S) frames.

        Returns:
            (N, T, S, S) reconstruction in [0, 1].
        """
        z = self.norm1(self.deconv1(self.encoder(x)))
        z = self.norm2(self.deconv2(F.UpSampling(z, scale=2, sample_type="nearest")))
        y = self.deconv3(F.UpSampling(z, scale=2, sample_type="nearest"))
        if self.window < 2:
            y = F.slice_axis(y, axis=1, begin=0, end=self.window)
        return F.sigmoid(y)
