"""Which weights a running detector may load: those in the folders the configuration
allows (``detector.model_dirs``), and those the configuration itself names.

Every model asked for while running (the dashboard's API, the control channel, MQTT
``<stream>/model/set``, a camera added to ``vadstream run``) goes through
:meth:`ModelFolders.check`. A refusal reads the same whether the file is missing or
outside the folders, so a request learns nothing about files on the host.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

from models.weights import weights_paths
from stream.defaults import THRESHOLD_RANGE
from stream.paths import within_any


class ModelRefusedError(ValueError):
    """Weights that may not be loaded (missing, or outside the allowed folders)."""


class ModelFolders:
    """The allowed model folders and the configured weights.

    Args:
        folders: Folders whose weights (at any depth) may be loaded; relative ones are
            relative to the working directory.
        configured: Weights the configuration names (``detector.model``, ``streams:``
            models): allowed wherever they are.
    """

    def __init__(self, folders: Iterable[str | Path], configured: Iterable[str] = ()) -> None:
        self.folders = tuple(Path(f) for f in folders)
        self.configured = {_params(w) for w in configured if w}

    def check(self, weights: str) -> str:
        """``weights`` when it may be loaded.

        Raises:
            ModelRefusedError: The same message for a missing file and a forbidden one.
        """
        params = _params(weights)
        allowed = params in self.configured or within_any(self.folders, params) is not None
        if not (allowed and params.is_file() and weights_paths(params)[1].is_file()):
            shown = weights if len(weights) <= 200 else f"{weights[:200]}..."
            raise ModelRefusedError(
                f"cannot load weights {shown!r}: name a weights stem (or its .params) that "
                f"is in an allowed model folder ({', '.join(map(str, self.folders))}; "
                "detector.model_dirs) or in the config")
        return weights


def _params(weights: str) -> Path:
    return weights_paths(weights)[0].resolve()


def check_threshold_range(value: float | None, calibrated: float) -> float | None:
    """A threshold override bounded by its model's calibration: finite, and within
    :data:`THRESHOLD_RANGE` times the calibrated threshold either way (positive when the
    calibrated one is); None stays None (the calibrated one).

    Raises:
        ValueError: Naming the range and what to do instead.
    """
    if value is None or not (calibrated > 0 and math.isfinite(calibrated)):
        return value
    low, high = calibrated / THRESHOLD_RANGE, calibrated * THRESHOLD_RANGE
    if not low <= value <= high:
        raise ValueError(f"threshold {value:g} is outside {low:g}..{high:g}, 1/"
                         f"{THRESHOLD_RANGE:g} to {THRESHOLD_RANGE:g} times the model's "
                         f"calibrated {calibrated:g}: beyond that it would never or always "
                         "alert; switch detection off (detect) to silence a stream")
    return value
