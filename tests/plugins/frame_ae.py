"""A small per-frame model family (window 1), registered as a plug-in: the seam the
image-model families use. Importing this module registers ``test_frame_ae``."""

from __future__ import annotations

from pathlib import Path

import mxnet as mx
from mxnet.gluon import HybridBlock, nn

from models import InputContract, ModelFamily, Temporal, WeightsMeta, save_weights
from models.registry import register_family

NAME = "test_frame_ae"


class FrameAE(HybridBlock):
    """A two-convolution frame autoencoder: (N, 1, S, S) -> (N, 1, S, S)."""

    def __init__(self, channels: int = 4, **kwargs) -> None:
        super().__init__(**kwargs)
        with self.name_scope():
            self.encode = nn.Conv2D(channels, 3, padding=1, activation="tanh", in_channels=1)
            self.decode = nn.Conv2D(1, 3, padding=1, in_channels=channels)

    def hybrid_forward(self, F, x):  # noqa: N803 - Gluon's F convention
        return self.decode(self.encode(x))


class FrameAEFamily(ModelFamily):
    """One frame per window, every frame scored by its reconstruction error."""

    name = NAME

    def network(self, **kwargs) -> HybridBlock:
        return FrameAE(**kwargs)

    def temporal(self, meta: WeightsMeta) -> Temporal:
        if meta.window != 1:
            raise ValueError(f"{NAME} scores single frames: window must be 1, got "
                             f"{meta.window}")
        return Temporal(window=1, scorable=1)


register_family(FrameAEFamily())


def make_frame_weights(path: Path, threshold: float, seed: int = 1, size: int = 64) -> Path:
    """Randomly initialised weights of the family, calibrated with rule ``error``."""
    mx.random.seed(seed)
    net = FrameAE()
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros((1, 1, size, size)))
    meta = WeightsMeta(model=NAME, model_args={"channels": 4}, window=1,
                       contract=InputContract(size=size),
                       calibration={"rule": "error", "thresholds": {"error": threshold}},
                       provenance={"note": "random test weights of a plug-in family"})
    return save_weights(net, meta, path)
