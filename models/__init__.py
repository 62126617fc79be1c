"""Networks, model families, the input contract, scoring and weights: no runtime or
training code here.

The names below are imported when first used (PEP 562), so a process that needs only a
light module of this package (``models.scoring`` for a pipeline config, ``models.contract``)
does not load MXNet: ``vadstream run``'s supervisor and every capture stay small.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: Each exported name and the module that defines it.
_EXPORTS = {
    "InputContract": "models.contract",
    "ModelFamily": "models.family", "Temporal": "models.family",
    "FrameCAE": "models.frame_cae",
    "Predictor": "models.predictor",
    "get_family": "models.registry", "get_model": "models.registry",
    "model_names": "models.registry", "register_family": "models.registry",
    "StackedAE": "models.stacked_ae",
    "STAE": "models.stae", "InferenceSTAE": "models.stae", "inference_form": "models.stae",
    "DEFAULT_WEIGHTS": "models.weights", "STAE_WEIGHTS": "models.weights",
    "WeightsError": "models.weights", "WeightsMeta": "models.weights",
    "load_calibration_arrays": "models.weights", "load_weights": "models.weights",
    "read_meta": "models.weights", "save_weights": "models.weights",
}

__all__ = ["DEFAULT_WEIGHTS", "STAE", "STAE_WEIGHTS", "FrameCAE", "InferenceSTAE",
           "InputContract", "ModelFamily", "Predictor", "StackedAE", "Temporal", "WeightsError",
           "WeightsMeta", "get_family", "get_model", "inference_form", "load_calibration_arrays",
           "load_weights", "model_names", "read_meta", "register_family", "save_weights"]

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
