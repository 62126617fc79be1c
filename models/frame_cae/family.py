"""The frame CAE as a model family: one frame per window, scored by its reconstruction
error (no ``motion``: a one-frame window has no frame before)."""

from __future__ import annotations

from models.family import ModelFamily, Temporal, check_contract
from models.frame_cae.network import FRAME_SIZE, FrameCAE
from models.meta import WeightsMeta


class FrameCAEFamily(ModelFamily):
    """The seed notebook's convolutional autoencoder (:class:`models.frame_cae.FrameCAE`)."""

    name = "frame_cae"
    network_class = FrameCAE

    def window(self, model_args: dict) -> int:
        return 1

    def temporal(self, meta: WeightsMeta) -> Temporal:
        if meta.window != 1:
            raise ValueError(f"{self.name} reconstructs single frames: window must be 1, got "
                             f"{meta.window}")
        check_contract(self.name, meta, int(meta.model_args.get("size", FRAME_SIZE)),
                       unit_range=True)
        return Temporal(window=1, scorable=1)
