"""The STAE as a model family: windows of T frames, every frame scored, the inference
form at run time, the reconstruction scorer (``motion`` reads the frame before)."""

from __future__ import annotations

import mxnet as mx
from mxnet.gluon import HybridBlock

from models.family import FeatureGroup, ModelFamily, Split, Temporal
from models.meta import WeightsMeta
from models.scoring import LOOKBACK
from models.stae.inference import InferenceSTAE, inference_form
from models.stae.network import STAE, WINDOW


class STAEFamily(ModelFamily):
    """Chong & Tay 2017's spatio-temporal autoencoder (:class:`models.stae.STAE`)."""

    name = "stae"
    network_class = STAE
    #: Kept in fp32 by int8: the first layer (one input channel, the raw frame), the last
    #: (the reconstruction itself) and the ConvLSTMs' hidden-to-hidden convolutions, whose
    #: int8 errors compound over the time steps (in int8 they made the largest pixel error
    #: 10x larger on Ped2 test windows: 0.31 instead of 0.03); and their input-to-hidden
    #: ones, computed step by step, each read by its step's fused hidden-to-hidden
    #: convolution as its sum: MXNet 1.9.1 crashes (a segmentation fault) building that
    #: graph with them in int8.
    int8_fp32_layers = ("enc1", "dec2", "h2h", "i2h")

    def window(self, model_args: dict) -> int:
        return int(model_args.get("window", WINDOW))

    def temporal(self, meta: WeightsMeta) -> Temporal:
        if meta.window < 2:
            raise ValueError(f"weights with a window of {meta.window} frame: scoring needs at "
                             "least 2 (the error's change between frames); retrain it with a "
                             "longer window")
        return Temporal(window=meta.window, scorable=meta.window, lookback=LOOKBACK)

    def inference(self, trained: HybridBlock, meta: WeightsMeta, ctx: mx.Context,
                  outputs: int | None = None) -> dict[int, HybridBlock]:
        full = inference_form(trained, ctx) if isinstance(trained, STAE) else trained
        nets = {meta.window: full}
        if outputs and outputs < meta.window and hasattr(full, "tail"):
            nets[outputs] = full.tail(outputs)
        return nets

    def split(self, trained: HybridBlock, meta: WeightsMeta, ctx: mx.Context,
              outputs: int | None = None) -> Split | None:
        """The inference form as the per-frame :class:`models.stae.inference.STAEEncoder`
        (spatial encoder and the first ConvLSTM's input-to-hidden convolution) and the
        ConvLSTMs' recurrences with the decoder on its outputs."""
        full = inference_form(trained, ctx) if isinstance(trained, STAE) else trained
        if not isinstance(full, InferenceSTAE):
            return None
        temporal = {meta.window: full.temporal(meta.window)}
        if outputs and outputs < meta.window:
            temporal[outputs] = full.temporal(outputs)
        encoder = full.encoder()
        shape = (4 * full.lstm1._hidden, *full.border.shape[2:])
        side = encoder(mx.nd.zeros((1, *meta.contract.shape), ctx=ctx)).shape[2:]
        return Split(encoder, temporal,
                     (FeatureGroup((shape[0], *side), tuple(range(meta.window))),))
