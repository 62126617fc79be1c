"""Two registered networks run on one window, their outputs side by side, as a Gluon
HybridBlock (the fused family's network: one graph, batched and exported as one)."""

from __future__ import annotations

import numpy as np
from mxnet.gluon import HybridBlock

from models.registry import get_family, get_model


class FusedNet(HybridBlock):
    """A motion network and an appearance network on the newest frames of one window.

    Input: (N, W, S, S), W the longer of the two networks' windows; each reads its own
    window's worth of the newest frames. Output: (N, 1, Dm + Da): each network's output
    for the window's newest frame, flattened, motion first.

    Args:
        motion: The motion network's constructor arguments (``motion_model``'s).
        appearance: The appearance network's (``appearance_model``'s).
        motion_model: Registered family of the motion network (one frame scored per
            window).
        appearance_model: Registered family of the appearance network (likewise).
    """

    def __init__(self, motion: dict, appearance: dict, motion_model: str = "predictor",
                 appearance_model: str = "object_ae", **kwargs) -> None:
        super().__init__(**kwargs)
        self.windows = (get_family(motion_model).window(motion),
                        get_family(appearance_model).window(appearance))
        self.window = max(self.windows)
        with self.name_scope():
            self.motion = get_model(motion_model, **motion)
            self.appearance = get_model(appearance_model, **appearance)

    def hybrid_forward(self, F, x):  # noqa: N803 - Gluon's F convention
        outs = []
        for net, w in ((self.motion, self.windows[0]), (self.appearance, self.windows[1])):
            y = net(F.slice_axis(x, axis=1, begin=self.window - w, end=self.window))
            outs.append(F.reshape(y, shape=(0, -1)))
        return F.expand_dims(F.concat(*outs, dim=1), axis=1)


def split_output(output: np.ndarray, sizes: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The motion and appearance parts of (F, Dm + Da) fused outputs."""
    out = np.asarray(output, np.float32)
    if out.ndim != 2 or out.shape[1] != sum(sizes):
        raise ValueError(f"a fused output has {sizes[0]} + {sizes[1]} values per frame, got "
                         f"shape {out.shape}")
    return out[:, :sizes[0]], out[:, sizes[0]:]
