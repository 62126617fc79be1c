"""Model registry: build a network by name."""

from __future__ import annotations

from collections.abc import Callable

from mxnet.gluon import HybridBlock

from models.stae import STAE

_MODELS: dict[str, Callable[..., HybridBlock]] = {"stae": STAE}


def model_names() -> list[str]:
    """Names accepted by :func:`get_model`."""
    return sorted(_MODELS)


def get_model(name: str, **kwargs) -> HybridBlock:
    """Build an (uninitialised) network.

    Args:
        name: Registered model name, e.g. ``"stae"``.
        **kwargs: The model constructor's arguments.

    Returns:
        The network.

    Raises:
        ValueError: If ``name`` is unknown (the message lists valid names) or the
            arguments do not fit the constructor.
    """
    try:
        factory = _MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(model_names())}") \
            from None
    try:
        return factory(**kwargs)
    except TypeError as err:
        raise ValueError(f"bad arguments for model {name!r}: {err}") from err
