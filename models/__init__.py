"""Networks, the input contract and weights: no runtime or training code here."""

from models.contract import InputContract
from models.inference import InferenceSTAE, inference_form
from models.registry import get_model, model_names
from models.stae import STAE
from models.weights import (
    DEFAULT_WEIGHTS,
    WeightsError,
    WeightsMeta,
    load_calibration_arrays,
    load_weights,
    read_meta,
    save_weights,
)

__all__ = ["DEFAULT_WEIGHTS", "STAE", "InferenceSTAE", "InputContract", "WeightsError",
           "WeightsMeta", "get_model", "inference_form", "load_calibration_arrays",
           "load_weights", "model_names", "read_meta", "save_weights"]
