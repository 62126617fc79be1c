"""Networks, model families, the input contract, scoring and weights: no runtime or
training code here."""

from models.contract import InputContract
from models.family import ModelFamily, Temporal
from models.frame_cae import FrameCAE
from models.predictor import Predictor
from models.registry import get_family, get_model, model_names, register_family
from models.stacked_ae import StackedAE
from models.stae import STAE, InferenceSTAE, inference_form
from models.weights import (
    DEFAULT_WEIGHTS,
    STAE_WEIGHTS,
    WeightsError,
    WeightsMeta,
    load_calibration_arrays,
    load_weights,
    read_meta,
    save_weights,
)

__all__ = ["DEFAULT_WEIGHTS", "STAE", "STAE_WEIGHTS", "FrameCAE", "InferenceSTAE",
           "InputContract", "ModelFamily", "Predictor", "StackedAE", "Temporal", "WeightsError",
           "WeightsMeta", "get_family", "get_model", "inference_form", "load_calibration_arrays",
           "load_weights", "model_names", "read_meta", "register_family", "save_weights"]
