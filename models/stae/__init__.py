"""Chong & Tay 2017's spatio-temporal autoencoder: the network, its inference form and
the family the runtime plugs in."""

from models.stae.inference import InferenceSTAE, inference_form
from models.stae.network import FRAME_SIZE, STAE

__all__ = ["FRAME_SIZE", "STAE", "InferenceSTAE", "inference_form"]
