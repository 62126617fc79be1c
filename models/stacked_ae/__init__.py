"""The seed notebook's stacked-frame spatio-temporal autoencoder: the network and its
family."""

from models.stacked_ae.network import FRAME_SIZE, StackedAE

__all__ = ["FRAME_SIZE", "StackedAE"]
