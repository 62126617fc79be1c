"""Model families by name: ``get_family(name)``, and ``get_model(name, **args)``."""

from __future__ import annotations

import importlib

from mxnet.gluon import HybridBlock

from models.family import ModelFamily

_FAMILIES: dict[str, ModelFamily] = {}


def register_family(family: ModelFamily) -> ModelFamily:
    """Register ``family`` under its name (a plug-in calls this when it is imported).

    Raises:
        ValueError: If the name is empty or taken by another family.
    """
    name = family.name
    if not name:
        raise ValueError(f"{type(family).__name__} has no name")
    if name in _FAMILIES and type(_FAMILIES[name]) is not type(family):
        raise ValueError(f"model family {name!r} is already registered "
                         f"({type(_FAMILIES[name]).__name__})")
    _FAMILIES[name] = family
    return family


def model_names() -> list[str]:
    """Names accepted by :func:`get_family` and :func:`get_model`."""
    _builtin()
    return sorted(_FAMILIES)


def get_family(name: str) -> ModelFamily:
    """The registered family ``name``.

    Raises:
        ValueError: If ``name`` is unknown (the message lists valid names and how a
            plug-in family is loaded).
    """
    _builtin()
    try:
        return _FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(model_names())} "
                         "(a plug-in family is registered by importing its module: "
                         "detector.plugins in the config)") from None


def get_model(name: str, **kwargs) -> HybridBlock:
    """Build an (uninitialised) network.

    Args:
        name: Registered model name, e.g. ``"stae"``.
        **kwargs: The model constructor's arguments.

    Raises:
        ValueError: If ``name`` is unknown (the message lists valid names) or the
            arguments do not fit the constructor.
    """
    family = get_family(name)
    try:
        return family.network(**kwargs)
    except TypeError as err:
        raise ValueError(f"bad arguments for model {name!r}: {err}") from err


#: The families shipped in ``models/``, as ``"module:Class"``: imported by name when a
#: family is first looked up, as plug-ins are (``detector.plugins``), so the registry
#: depends on no family and a family that composes others (``fused``) may look them up.
BUILTIN_FAMILIES = (
    "models.stae.family:STAEFamily",
    "models.predictor.family:PredictorFamily",
    "models.frame_cae.family:FrameCAEFamily",
    "models.stacked_ae.family:StackedAEFamily",
    "models.ssim_ae.family:SSIMAEFamily",
    "models.cam.family:CAMFamily",
    "models.object_ae.family:ObjectAEFamily",
    "models.fused.family:FusedFamily",
)


def _builtin() -> None:
    """Register the families of :data:`BUILTIN_FAMILIES` (once)."""
    if "stae" not in _FAMILIES:
        for entry in BUILTIN_FAMILIES:
            module, cls = entry.split(":")
            register_family(getattr(importlib.import_module(module), cls)())
