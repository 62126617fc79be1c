"""A motion model and an appearance model run on one window and fused into one score."""

from models.fused.network import FusedNet

__all__ = ["FusedNet"]
