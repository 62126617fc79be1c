"""Weights metadata: what the ``.json`` beside a ``.params`` file records.

Apart from :mod:`models.weights` (which builds networks through the registry) so that the
model families, which read this metadata, import nothing that imports the registry.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import mxnet as mx

from models.contract import InputContract

FORMAT = "vadstream-weights"
FORMAT_VERSION = 1


class WeightsError(ValueError):
    """Weights files are missing, malformed or do not fit the model."""


@dataclass
class WeightsMeta:
    """What the ``.json`` beside a ``.params`` file records.

    Args:
        model: Registered model name.
        model_args: Keyword arguments of the model constructor.
        window: Frames per window (T).
        contract: The input contract the weights were trained with.
        calibration: Scorer calibration (thresholds) from held-out normal footage.
        provenance: Free-form facts about how the weights were made.
    """

    model: str
    model_args: dict
    window: int
    contract: InputContract
    calibration: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready metadata, with format and engine versions."""
        return {"format": FORMAT, "format_version": FORMAT_VERSION,
                "mxnet": mx.__version__, "model": self.model, "model_args": self.model_args,
                "window": self.window, "contract": self.contract.to_dict(),
                "calibration": self.calibration, "provenance": self.provenance}

    @classmethod
    def from_dict(cls, data: dict, source: str) -> WeightsMeta:
        """Read metadata written by :meth:`to_dict`.

        Raises:
            WeightsError: On another format, a newer format version or missing keys.
        """
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise WeightsError(f"{source} is not vadstream weights metadata "
                               f"(expected \"format\": \"{FORMAT}\")")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise WeightsError(f"{source} has format_version {version!r}, this vadstream reads "
                               f"{FORMAT_VERSION}; retrain with `vadstream train` or upgrade")
        missing = [k for k in ("model", "model_args", "window", "contract") if k not in data]
        if missing:
            raise WeightsError(f"{source} lacks the keys {missing}; it is incomplete, "
                               "retrain with `vadstream train`")
        engine = str(data.get("mxnet", ""))
        if engine.split(".")[:1] != mx.__version__.split(".")[:1]:
            raise WeightsError(f"{source} was written by MXNet {engine or '(unknown)'}, this is "
                               f"MXNet {mx.__version__}; retrain with `vadstream train`")
        if data["model_args"].get("window", data["window"]) != data["window"]:
            raise WeightsError(f"{source}: window {data['window']} differs from the model's "
                               f"window {data['model_args']['window']}")
        try:
            contract = InputContract(**data["contract"])
        except (TypeError, ValueError) as err:
            raise WeightsError(f"{source}: bad input contract: {err}") from err
        return cls(model=data["model"], model_args=dict(data["model_args"]),
                   window=int(data["window"]), contract=contract,
                   calibration=dict(data.get("calibration") or {}),
                   provenance=dict(data.get("provenance") or {}))
