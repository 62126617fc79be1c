"""``configs/ped2.yaml``: what to train, on what, and how the result is calibrated."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from dataclasses import asdict, dataclass
from pathlib import Path

import mxnet as mx

from models.contract import InputContract
from models.family import ModelFamily
from models.registry import get_family
from models.scoring import Scorer, ScorerConfig
from stream.config import ConfigError, build, check_sections, load_yaml
from stream.detector.engine import pick_context
from train.image_trainer import ImageTrainConfig
from train.trainer import TrainConfig

#: The family a ``model:`` section without ``name`` trains.
DEFAULT_MODEL = "stae"


def model_section(family: ModelFamily) -> type | None:
    """The ``model:`` section of ``family`` as a dataclass: ``name`` and its network's
    constructor arguments, with their types and defaults (None: the family names no
    network class, and its arguments are checked when the network is built).
    """
    cls = family.network_class
    if cls is None:
        return None
    hints = typing.get_type_hints(cls.__init__)
    fields = [("name", str, dataclasses.field(default=family.name))]
    for p in list(inspect.signature(cls.__init__).parameters.values())[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name in family.form_args:
            continue        # Gluon's prefix/params; a form of the network, not its weights
        fields.append((p.name, hints[p.name], dataclasses.field(default=p.default)))
    return dataclasses.make_dataclass(f"{cls.__name__}Section", fields, frozen=True)


@dataclass(frozen=True)
class DataConfig:
    """``data:``: where the normal footage is and where the weights go.

    Args:
        root: Dataset root, ``Train/`` folder or clip folder of normal footage.
        out: Weights stem to write.
        stride: Detector stride the calibration assumes.
        kind: ``clips`` (folders of normal footage) or ``images`` (one subfolder of
            images per class, e.g. ``ok_front``/``def_front``: see :mod:`train.images`).
        normal: The normal class folder of an image data set (None: recognised by name).
    """

    root: str = "../shared/data/UCSDped2"
    out: str = "models/weights/ped2_stae"
    stride: int = 5
    kind: str = "clips"
    normal: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("clips", "images"):
            raise ValueError(f"kind must be 'clips' or 'images', got {self.kind!r}")


@dataclass(frozen=True)
class TrainJob:
    """A training config, read and checked."""

    data: str
    out: str
    stride: int
    model: str
    model_args: dict
    contract: InputContract
    training: TrainConfig | ImageTrainConfig
    scorer: Scorer
    kind: str = "clips"
    normal: str | None = None

    @staticmethod
    def context(device: str) -> mx.Context:
        return pick_context(device)


def load_train_config(path: str | Path) -> TrainJob:
    """Read ``configs/ped2.yaml``-style training config.

    Raises:
        ConfigError: Naming the file, the key and what is valid.
    """
    data = load_yaml(path)
    check_sections(data, path, ["data", "model", "contract", "training", "scorer"])
    where = str(path)
    paths = build(DataConfig, data.get("data"), f"{where}: data")
    section = data.get("model")
    name = section.get("name", DEFAULT_MODEL) if isinstance(section, dict) else DEFAULT_MODEL
    try:
        family = get_family(str(name))
    except ValueError as err:
        raise ConfigError(f"{where}: model.name: {err}") from None
    schema = model_section(family)
    if schema is None:
        if section is not None and not isinstance(section, dict):
            raise ConfigError(f"{where}: model must be a mapping of keys, got {section!r}")
        args = dict(section or {})
    else:
        args = asdict(build(schema, section, f"{where}: model"))
    contract = build(InputContract, data.get("contract"), f"{where}: contract")
    schema = ImageTrainConfig if paths.kind == "images" else TrainConfig
    training = build(schema, data.get("training"), f"{where}: training")
    scorer = build(ScorerConfig, data.get("scorer"), f"{where}: scorer")
    name = args.pop("name", family.name)
    return TrainJob(data=paths.root, out=paths.out, stride=paths.stride, model=name,
                    model_args=args, contract=contract, training=training,
                    scorer=Scorer(pixel_threshold=scorer.pixel_threshold,
                                  pixel_scale=contract.pixel_scale),
                    kind=paths.kind, normal=paths.normal)
