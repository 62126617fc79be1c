"""Inference backends as plug-ins: the interface the engine needs
(:class:`~stream.detector.backends.base.Backend`), MXNet
(:mod:`~stream.detector.backends.mxnet_backend`), onnxruntime
(:mod:`~stream.detector.backends.onnxruntime_backend`, imported only when asked for) and
the precision policy (:mod:`~stream.detector.backends.policy`)."""

from __future__ import annotations

from stream.defaults import BACKENDS
from stream.detector.backends.base import Backend


def get_backend(name: str) -> Backend:
    """The backend ``name`` (one of :data:`stream.defaults.BACKENDS`); onnxruntime is
    imported only when asked for.

    Raises:
        ValueError: For an unknown name, listing the valid ones.
    """
    if name == "mxnet":
        from stream.detector.backends.mxnet_backend import MXNetBackend

        return MXNetBackend()
    if name == "onnxruntime":
        from stream.detector.backends.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend()
    raise ValueError(f"backend {name!r} is not one of {list(BACKENDS)}")
