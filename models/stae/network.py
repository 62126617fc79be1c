"""Spatio-temporal autoencoder of Chong & Tay 2017 as a Gluon HybridBlock."""

from __future__ import annotations

from mxnet.gluon import HybridBlock, nn

from models.stae.convlstm import ConvLSTM

#: Frame side the network expects and returns (Chong & Tay use 227×227).
FRAME_SIZE = 227
#: Frames per window (T) of the paper.
WINDOW = 10


class STAE(HybridBlock):
    """Chong & Tay 2017 spatio-temporal autoencoder.

    "Abnormal Event Detection in Videos using Spatiotemporal Autoencoder" (ISNN 2017):
    a per-frame spatial encoder (Conv 11×11/4 ×128, Conv 5×5/2 ×64 → 26×26), a temporal
    encoder-decoder of three convolutional LSTMs (64 → 32 → 64 channels, 3×3), and a
    per-frame spatial decoder (Deconv 5×5/2 ×128, Deconv 11×11/4 ×1) back to 227×227.

    Input and output: (N, T, 227, 227), one grayscale channel per frame, in the units of
    the input contract (``models.contract.InputContract``).

    Args:
        window: Frames per window (T).
        spatial_channels: Channels of the two encoder convolutions (paper: 128, 64).
        temporal_channels: Hidden channels of the three ConvLSTMs (paper: 64, 32, 64).
    """

    def __init__(self, window: int = WINDOW, spatial_channels: tuple[int, int] = (128, 64),
                 temporal_channels: tuple[int, int, int] = (64, 32, 64), **kwargs) -> None:
        super().__init__(**kwargs)
        if window < 1:
            raise ValueError(f"window must be at least 1 frame, got {window}")
        if len(spatial_channels) != 2 or len(temporal_channels) != 3:
            raise ValueError("spatial_channels takes 2 values and temporal_channels 3, "
                             f"got {spatial_channels} and {temporal_channels}")
        self.window = window
        c1, c2 = spatial_channels
        t1, t2, t3 = temporal_channels
        with self.name_scope():
            self.encoder = nn.HybridSequential(prefix="enc_")
            with self.encoder.name_scope():
                self.encoder.add(nn.Conv2D(c1, 11, strides=4, activation="tanh", in_channels=1),
                                 nn.Conv2D(c2, 5, strides=2, activation="tanh", in_channels=c1))
            self.lstm1 = ConvLSTM(c2, t1, window, prefix="lstm1_")
            self.lstm2 = ConvLSTM(t1, t2, window, prefix="lstm2_")
            self.lstm3 = ConvLSTM(t2, t3, window, prefix="lstm3_")
            self.decoder = nn.HybridSequential(prefix="dec_")
            with self.decoder.name_scope():
                self.decoder.add(
                    nn.Conv2DTranspose(c1, 5, strides=2, activation="tanh", in_channels=t3),
                    # Two output channels, of which the second is discarded: MXNet 1.9.1's
                    # oneDNN fails ("could not create a primitive descriptor for a reorder
                    # primitive") on the data gradient of a one-channel Deconvolution from
                    # the second training step on. The spare channel costs ~3% of the FLOPs.
                    nn.Conv2DTranspose(2, 11, strides=4, in_channels=c1))

    def hybrid_forward(self, F, x):  # noqa: N803 - Gluon's F convention
        """Reconstruct a window.

        Args:
            x: (N, T, 227, 227) frames.

        Returns:
            (N, T, 227, 227) reconstruction.
        """
        frames = F.reshape(x, shape=(-1, 1, 0, 0))                 # (N*T, 1, 227, 227)
        z = self.encoder(frames)                                   # (N*T, 64, 26, 26)
        z = F.reshape(z, shape=(-4, -1, self.window, -2))          # (N, T, 64, 26, 26)
        z = self.lstm3(self.lstm2(self.lstm1(z)))
        z = F.reshape(z, shape=(-3, -2))                           # (N*T, 64, 26, 26)
        y = F.slice_axis(self.decoder(z), axis=1, begin=0, end=1)  # (N*T, 1, 227, 227)
        return F.reshape(y, shape=(-1, self.window, 0, 0))
