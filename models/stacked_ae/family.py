"""The stacked-frame AE as a model family: windows of T frames, every frame scored by
the reconstruction scorer (``motion`` reads the frame before, as for the STAE)."""

from __future__ import annotations

from models.family import ModelFamily, Temporal, check_contract
from models.meta import WeightsMeta
from models.scoring import LOOKBACK
from models.stacked_ae.network import FRAME_SIZE, WINDOW, StackedAE


class StackedAEFamily(ModelFamily):
    """Hasan et al. 2016-style frames-as-channels autoencoder
    (:class:`models.stacked_ae.StackedAE`)."""

    name = "stacked_ae"
    network_class = StackedAE

    def window(self, model_args: dict) -> int:
        return int(model_args.get("window", WINDOW))

    def temporal(self, meta: WeightsMeta) -> Temporal:
        if meta.window < 2:
            raise ValueError(f"{self.name} weights with a window of {meta.window} frame: it "
                             "stacks frames, use frame_cae for single frames or retrain with "
                             "a window of at least 2")
        check_contract(self.name, meta, int(meta.model_args.get("size", FRAME_SIZE)),
                       unit_range=True)
        return Temporal(window=meta.window, scorable=meta.window, lookback=LOOKBACK)
