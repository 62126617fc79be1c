"""A ConvLSTM next-frame predictor with skip connections: the network and its family."""

from models.predictor.network import CONTEXT, FRAME_SIZE, Predictor

__all__ = ["CONTEXT", "FRAME_SIZE", "Predictor"]
