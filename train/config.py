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
from stream.config import ConfigError, build, check_keys, check_sections, load_extending
from stream.defaults import STRIDE
from stream.detector.engine import pick_context
from train.image_trainer import ImageTrainConfig
from train.trainer import TrainConfig

#: The family a training config without ``model.name`` trains: the STAE, whose Ped2
#: training the defaults of ``data:``, ``contract:`` and ``training:`` describe
#: (``configs/ped2.yaml``, ``vadstream train``'s default config). Not the runtime's
#: default model (``stream.defaults.WEIGHTS``, the predictor): a config that trains the
#: predictor says ``name: predictor``, or extends ``configs/ped2_predictor.yaml``.
DEFAULT_MODEL = "stae"
#: A training config's sections (and ``extends``, read before these).
SECTIONS = ("data", "model", "contract", "training", "scorer")


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
    stride: int = STRIDE
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
    """Read a ``configs/ped2.yaml``-style training config, and the configs it extends.

    ``extends: other.yaml`` (relative to the file) starts from that config: this file's
    keys are laid over it, section by section (:func:`stream.config.load_extending`). A
    key left out everywhere takes its dataclass default. The image size is given once:
    ``contract.size`` (or the model's ``size``) sets the other.

    Raises:
        ConfigError: Naming the file that wrote the key, the key and what is valid.
    """
    data, origins = load_extending(path)
    check_sections(data, path, SECTIONS, origins)
    where = str(path)
    check_keys(DataConfig, data.get("data"), "data", origins)
    paths = build(DataConfig, data.get("data"), f"{where}: data")
    section = data.get("model")
    name = section.get("name", DEFAULT_MODEL) if isinstance(section, dict) else DEFAULT_MODEL
    try:
        family = get_family(str(name))
    except ValueError as err:
        raise ConfigError(f"{origins.get(('model', 'name'), where)}: model.name: {err}") \
            from None
    schema = model_section(family)
    contract_section = data.get("contract")
    if schema is None:
        if section is not None and not isinstance(section, dict):
            raise ConfigError(f"{where}: model must be a mapping of keys, got {section!r}")
        args = dict(section or {})
    else:
        check_keys(schema, section, "model", origins)
        section, contract_section = _one_size(schema, section, contract_section, where)
        args = asdict(build(schema, section, f"{where}: model"))
    check_keys(InputContract, contract_section, "contract", origins)
    contract = build(InputContract, contract_section, f"{where}: contract")
    schema = ImageTrainConfig if paths.kind == "images" else TrainConfig
    check_keys(schema, data.get("training"), "training", origins)
    training = build(schema, data.get("training"), f"{where}: training")
    check_keys(ScorerConfig, data.get("scorer"), "scorer", origins)
    scorer = build(ScorerConfig, data.get("scorer"), f"{where}: scorer")
    name = args.pop("name", family.name)
    return TrainJob(data=paths.root, out=paths.out, stride=paths.stride, model=name,
                    model_args=args, contract=contract, training=training,
                    scorer=Scorer(pixel_threshold=scorer.pixel_threshold,
                                  pixel_scale=contract.pixel_scale),
                    kind=paths.kind, normal=paths.normal)


def _one_size(schema: type, model: object, contract: object, where: str
              ) -> tuple[object, object]:
    """The ``model:`` and ``contract:`` sections with the image size written in one of
    them copied into the other (a network whose ``size`` is its frame side must take
    frames of the contract's size).

    Raises:
        ConfigError: If both give a size and they differ.
    """
    if "size" not in {f.name for f in dataclasses.fields(schema)} \
            or not isinstance(model, (dict, type(None))) \
            or not isinstance(contract, (dict, type(None))):
        return model, contract          # build() names a section that is not a mapping
    model, contract = dict(model or {}), dict(contract or {})
    if "size" in model and "size" in contract:
        if model["size"] != contract["size"]:
            raise ConfigError(f"{where}: model.size {model['size']!r} and contract.size "
                              f"{contract['size']!r} differ; give the image size once, as "
                              "contract.size")
    elif "size" in contract:
        model["size"] = contract["size"]
    elif "size" in model:
        contract["size"] = model["size"]
    return model or None, contract or None
