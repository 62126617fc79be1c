"""``configs/ped2.yaml``: what to train, on what, and how the result is calibrated."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import mxnet as mx

from models.contract import InputContract
from models.scoring import Scorer, ScorerConfig
from stream.config import build, check_sections, load_yaml
from stream.detector.engine import pick_context
from train.trainer import TrainConfig


@dataclass(frozen=True)
class ModelConfig:
    """``model:``: the registered name and the arguments of ``models.STAE``."""

    name: str = "stae"
    window: int = 10
    spatial_channels: tuple[int, int] = (128, 64)
    temporal_channels: tuple[int, int, int] = (64, 32, 64)


@dataclass(frozen=True)
class DataConfig:
    """``data:``: where the normal footage is and where the weights go.

    Args:
        root: Dataset root, ``Train/`` folder or clip folder of normal footage.
        out: Weights stem to write.
        stride: Detector stride the calibration assumes.
    """

    root: str = "../shared/data/UCSDped2"
    out: str = "models/weights/ped2_stae"
    stride: int = 5


@dataclass(frozen=True)
class TrainJob:
    """A training config, read and checked."""

    data: str
    out: str
    stride: int
    model: str
    model_args: dict
    contract: InputContract
    training: TrainConfig
    scorer: Scorer

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
    model = build(ModelConfig, data.get("model"), f"{where}: model")
    contract = build(InputContract, data.get("contract"), f"{where}: contract")
    training = build(TrainConfig, data.get("training"), f"{where}: training")
    scorer = build(ScorerConfig, data.get("scorer"), f"{where}: scorer")
    args = asdict(model)
    name = args.pop("name")
    return TrainJob(data=paths.root, out=paths.out, stride=paths.stride, model=name,
                    model_args=args, contract=contract, training=training,
                    scorer=Scorer(pixel_threshold=scorer.pixel_threshold,
                                  pixel_scale=contract.pixel_scale))
