"""The class-activation-map classifier of the crack documents."""

from models.cam.network import CAMClassifier

__all__ = ["CAMClassifier"]
