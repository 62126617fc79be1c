"""A crop autoencoder of appearance and local motion, run on every crop of a fixed grid,
as a Gluon HybridBlock.

A window's newest frame x_t, its change from two frames before (x_t − x_{t−2}) and the
change before that (x_{t−2} − x_{t−4}) are stacked as three channels. Crops of C×C pixels
are cut from them at every position of a grid with a step of P pixels (C a multiple of P:
blocks of P×P pixels are regrouped, so the cutting is slices, concatenations and one
transpose, all of which ONNX has); each crop goes through a small convolutional
autoencoder, and its mean squared reconstruction error is that crop's score. The network
also outputs the window's motion map, max_k |x_t − x_{t−k}| over the window's earlier
frames, from which :class:`models.object_ae.regions.RegionFinder` finds the moving objects
whose crops count (in the scorer, the same code offline and live).

Every crop of the grid is run (a fixed shape, batched per model and exportable); training
sees only the crops of moving objects (:meth:`ObjectAE.crop_inputs` cut in NumPy).
"""

from __future__ import annotations

import numpy as np
from mxnet.gluon import HybridBlock, nn

#: Frame side the network takes.
FRAME_SIZE = 128
#: Side of a crop, and the grid step crops are cut at (pixels at the frame side).
CROP = 32
STEP = 8
#: Frames per window: the motion map reaches this far back.
WINDOW = 8
#: Frames between the newest frame and the one each motion channel is taken against.
LAG = 2
#: Factor on the motion channels (a walker's change is a few grey levels: scaled up, the
#: autoencoder weighs its shape as much as the appearance).
MOTION_GAIN = 4.0


def grid_side(size: int, crop: int, step: int) -> int:
    """Crop positions per axis: the crops at 0, step, ... that fit in the frame."""
    return (size - crop) // step + 1


def crop_centres(size: int, crop: int, step: int) -> np.ndarray:
    """Pixel coordinate (row or column) of each grid position's crop centre."""
    return np.arange(grid_side(size, crop, step)) * step + crop / 2


def _conv(channels: int, in_channels: int, stride: int = 1) -> nn.Conv2D:
    return nn.Conv2D(channels, 3, strides=stride, padding=1, in_channels=in_channels)


class CropAE(HybridBlock):
    """Convolutional autoencoder of (M, 3, C, C) crops: three stride-2 3×3 convolutions
    (c1, c2, c3 channels), a C/8×C/8 convolution to a ``code``-vector, and the mirror
    (a transposed convolution back to C/8, then nearest up-sampling and a 3×3 convolution
    three times; leaky ReLU between)."""

    def __init__(self, crop: int, channels: tuple[int, int, int], code: int,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        c1, c2, c3 = channels
        side = crop // 8
        with self.name_scope():
            self.enc1 = _conv(c1, 3, 2)
            self.enc2 = _conv(c2, c1, 2)
            self.enc3 = _conv(c3, c2, 2)
            self.code = nn.Conv2D(code, side, in_channels=c3)
            self.expand = nn.Conv2DTranspose(c3, side, in_channels=code)
            self.dec3 = _conv(c2, c3)
            self.dec2 = _conv(c1, c2)
            self.dec1 = _conv(c1, c1)
            self.out = _conv(3, c1)

    def hybrid_forward(self, F, x):  # noqa: N803 - Gluon's F convention
        def act(y):
            return F.LeakyReLU(y, slope=0.2)

        y = act(self.enc3(act(self.enc2(act(self.enc1(x))))))
        y = act(self.expand(act(self.code(y))))
        for conv in (self.dec3, self.dec2, self.dec1):
            y = act(conv(F.UpSampling(y, scale=2, sample_type="nearest")))
        return self.out(y)


class ObjectAE(HybridBlock):
    """Scores every grid crop of a window's newest frame and gives its motion map.

    Input: (N, T, S, S) windows. Output: (N, 1, G² + S²): the G×G grid of crop errors
    (mean squared error over the crop's three channels, model units), row-major, then the
    S×S motion map (model units), both flattened.

    Args:
        size: Frame side S, a multiple of ``step``; the input contract's size.
        window: Frames per window T (at least 2·LAG + 1: the motion channels read x_{t−4}).
        crop: Crop side C, a multiple of ``step`` and of 8.
        step: Grid step P.
        channels: Encoder channels (c1, c2, c3).
        code: Length of a crop's code.
        error_channels: Channels a crop's error averages: 3 (appearance and both motion
            channels) or 1 (the appearance channel alone); the same weights score either
            way, training always reconstructs all three.
    """

    def __init__(self, size: int = FRAME_SIZE, window: int = WINDOW, crop: int = CROP,
                 step: int = STEP, channels: tuple[int, int, int] = (16, 32, 32),
                 code: int = 64, error_channels: int = 3, **kwargs) -> None:
        super().__init__(**kwargs)
        if error_channels not in (1, 3):
            raise ValueError(f"error_channels must be 3 (all) or 1 (appearance alone), got "
                             f"{error_channels}")
        self.error_channels = error_channels
        if window < 2 * LAG + 1:
            raise ValueError(f"object_ae needs a window of at least {2 * LAG + 1} frames "
                             f"(its motion channels reach {2 * LAG} frames back), got {window}")
        if step < 1 or crop % step or crop % 8 or size % step or not crop <= size:
            raise ValueError(f"object_ae needs a crop side that is a multiple of 8 and of the "
                             f"step, and a frame side that is a multiple of the step and at "
                             f"least the crop: got size {size}, crop {crop}, step {step}")
        if len(channels) != 3 or min(channels) < 1 or code < 1:
            raise ValueError(f"channels takes 3 positive values and code 1, got {channels} "
                             f"and {code}")
        self.size, self.window, self.crop, self.step = size, window, crop, step
        self.grid = grid_side(size, crop, step)
        with self.name_scope():
            self.ae = CropAE(crop, tuple(channels), code, prefix="ae_")

    def channels(self, F, x):  # noqa: N803
        """(N, 3, S, S): the newest frame and its two motion channels."""
        t = self.window - 1

        def frame(i):
            return F.slice_axis(x, axis=1, begin=i, end=i + 1)

        new, mid, old = frame(t), frame(t - LAG), frame(t - 2 * LAG)
        return F.concat(new, (new - mid) * MOTION_GAIN, (mid - old) * MOTION_GAIN, dim=1)

    def crops(self, F, stacked):  # noqa: N803
        """(N·G², 3, C, C) every grid crop of (N, 3, S, S) channels, row-major per window."""
        p, r, g = self.step, self.crop // self.step, self.grid
        blocks = self.size // p
        # (N, 3, S/P, P, S/P, P): P×P blocks; a crop is r×r of them.
        y = F.reshape(stacked, shape=(0, 0, -4, blocks, p, -4, blocks, p))
        y = F.concat(*[F.slice_axis(y, axis=2, begin=a, end=a + g) for a in range(r)], dim=3)
        y = F.concat(*[F.slice_axis(y, axis=4, begin=a, end=a + g) for a in range(r)], dim=5)
        y = F.transpose(y, axes=(0, 2, 4, 1, 3, 5))             # (N, G, G, 3, C, C)
        return F.reshape(y, shape=(-1, 3, self.crop, self.crop))  # (N·G·G, 3, C, C)

    def motion(self, F, x):  # noqa: N803
        """(N, S, S): the largest |x_t − x_{t−k}| over the window's earlier frames."""
        t = self.window - 1
        new = F.slice_axis(x, axis=1, begin=t, end=t + 1)
        past = F.slice_axis(x, axis=1, begin=0, end=t)
        return F.max(F.abs(F.broadcast_sub(past, new)), axis=1)

    def hybrid_forward(self, F, x):  # noqa: N803 - Gluon's F convention
        crops = self.crops(F, self.channels(F, x))
        error = F.square(self.ae(crops) - crops)
        if self.error_channels == 1:
            error = F.slice_axis(error, axis=1, begin=0, end=1)
        error = F.mean(error, axis=(1, 2, 3))                                # (N·G²,)
        error = F.reshape(error, shape=(-1, self.grid * self.grid))
        motion = F.reshape(self.motion(F, x), shape=(0, -1))
        return F.expand_dims(F.concat(error, motion, dim=1), axis=1)

    def crop_inputs(self, windows: np.ndarray, cells: list[np.ndarray]) -> np.ndarray:
        """The network's crops at chosen grid cells, cut in NumPy (for training on moving
        objects only).

        Args:
            windows: (N, T, S, S).
            cells: Per window, the flat grid indices of its crops.

        Returns:
            (M, 3, C, C) float32, the windows' crops in order.
        """
        t, c, p, g = self.window - 1, self.crop, self.step, self.grid
        out = []
        for w, idx in zip(windows, cells, strict=True):
            new, mid, old = w[t], w[t - LAG], w[t - 2 * LAG]
            stacked = np.stack([new, (new - mid) * MOTION_GAIN, (mid - old) * MOTION_GAIN])
            for i in idx:
                r, q = divmod(int(i), g)
                out.append(stacked[:, r * p:r * p + c, q * p:q * p + c])
        return np.asarray(out, np.float32).reshape(-1, 3, c, c)
