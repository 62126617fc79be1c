"""The SSIM autoencoder as a model family: one image per window, trained on 1 − SSIM, and
scored by the local dissimilarity 1 − SSIM(x̂, x) summed over 4×4 windows."""

from __future__ import annotations

import mxnet as mx
import numpy as np
from mxnet.gluon import HybridBlock

from models.family import ModelFamily, Temporal, check_contract
from models.meta import WeightsMeta
from models.scoring import RULES, FrameScores, Scorer, ScorerConfig, window_sum
from models.ssim import ssim_loss, ssim_map
from models.ssim_ae.network import FRAME_SIZE, SSIMAutoencoder

#: 1 − SSIM (0..2) on the 0-255 scale the scorer's thresholds and maps use.
DISSIMILARITY_SCALE = 127.5


class SSIMScorer(Scorer):
    """:class:`models.scoring.Scorer` with the local dissimilarity in place of |x̂ − x|:
    d = 127.5·(1 − SSIM(x̂, x)) per pixel (0 where the structure is reproduced, 255 where
    it is inverted), so every rule but ``motion`` reads d's 4×4 sums as it reads the
    error's (``error`` is d's mean)."""

    def score(self, recon: np.ndarray, frames: np.ndarray, first: int = 0,
              ignore: np.ndarray | None = None) -> FrameScores:
        if not 0 <= first < len(frames):
            raise ValueError(f"first frame {first} is outside a window of {len(frames)}")
        d = DISSIMILARITY_SCALE * (1.0 - ssim_map(recon[first:], frames[first:]))
        np.maximum(d, 0, out=d)
        if ignore is not None:
            d[:, ignore] = 0
        sums = window_sum(d)
        return self.from_sums(sums, d.mean(axis=(-2, -1)), np.zeros_like(sums))


class SSIMAEFamily(ModelFamily):
    """The SSIM autoencoder (:class:`models.ssim_ae.SSIMAutoencoder`) on part images."""

    name = "ssim_ae"
    network_class = SSIMAutoencoder

    def window(self, model_args: dict) -> int:
        return 1

    def temporal(self, meta: WeightsMeta) -> Temporal:
        if meta.window != 1:
            raise ValueError(f"{self.name} reconstructs single images: window must be 1, got "
                             f"{meta.window}")
        check_contract(self.name, meta, int(meta.model_args.get("size", FRAME_SIZE)),
                       unit_range=True)
        return Temporal(window=1, scorable=1)

    def rules(self, meta: WeightsMeta) -> tuple[str, ...]:
        return tuple(r for r in RULES if r != "motion")

    def loss(self, net: HybridBlock, windows: mx.nd.NDArray,
             target: mx.nd.NDArray | None = None) -> mx.nd.NDArray:
        """1 − mean SSIM of each image's reconstruction (the window is its channel) with the
        image (or ``target``, the clean image of a corrupted input)."""
        return ssim_loss(net(windows), windows if target is None else target)

    def scorer(self, meta: WeightsMeta, arrays: dict[str, np.ndarray],
               config: ScorerConfig) -> Scorer:
        return config.build(meta.calibration, meta.contract.pixel_scale, arrays.get("baseline"),
                            arrays.get("spread"), scorer_class=SSIMScorer)
