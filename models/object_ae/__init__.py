"""Object-centric appearance autoencoder: moving regions found without a detector, each
scored by a crop autoencoder of appearance and local motion."""

from models.object_ae.network import CROP, FRAME_SIZE, STEP, WINDOW, ObjectAE
from models.object_ae.regions import RegionFinder

__all__ = ["CROP", "FRAME_SIZE", "STEP", "WINDOW", "ObjectAE", "RegionFinder"]
