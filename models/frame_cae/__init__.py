"""The seed notebook's per-frame convolutional autoencoder: the network and its family."""

from models.frame_cae.network import FRAME_SIZE, FrameCAE

__all__ = ["FRAME_SIZE", "FrameCAE"]
