"""Model families by name: ``get_family(name)``, and ``get_model(name, **args)``."""

from __future__ import annotations

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


def _builtin() -> None:
    """Register the families shipped in ``models/`` (imported late: they import this)."""
    if "stae" not in _FAMILIES:
        from models.cam.family import CAMFamily
        from models.frame_cae.family import FrameCAEFamily
        from models.fused.family import FusedFamily
        from models.object_ae.family import ObjectAEFamily
        from models.predictor.family import PredictorFamily
        from models.ssim_ae.family import SSIMAEFamily
        from models.stacked_ae.family import StackedAEFamily
        from models.stae.family import STAEFamily
        for family in (STAEFamily(), PredictorFamily(), FrameCAEFamily(), StackedAEFamily(),
                       SSIMAEFamily(), CAMFamily(), ObjectAEFamily(),
                       FusedFamily()):
            register_family(family)
