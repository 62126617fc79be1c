"""Moved: :mod:`stream.detector.backends.onnxruntime_backend`. These names stay here for
code that still imports them from this path."""

from stream.detector.backends.onnxruntime_backend import (  # noqa: F401
    SPLIT_TOLERANCE,
    OnnxNetwork,
    OnnxRunner,
    OnnxRuntimeBackend,
    onnx_session,
    session_options,
)
