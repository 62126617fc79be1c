"""``vadstream train``, ``calibrate`` and ``evaluate``: make a model, set its threshold,
measure it. Each calls one function of ``train.dispatch``, which tells video clips from
image folders."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from stream.apps.commands.common import DEVICES, add_options, options
from stream.apps.flags import flag
from stream.defaults import BACKENDS, PRECISIONS, WEIGHTS


@dataclass(frozen=True)
class TrainOptions:
    """``vadstream train`` (the training itself: the config file).

    Args:
        config: training YAML
        data: dataset root, Train/ folder or clip folder
        out: weights stem to write
        device: where the network trains
        resume: go on from the state saved beside the weights
    """

    config: Path = Path("configs/ped2.yaml")
    data: str | None = None
    out: Path | None = None
    device: str = flag("auto", choices=DEVICES)
    resume: bool = False


@dataclass(frozen=True)
class CalibrateOptions:
    """``vadstream calibrate``.

    Args:
        model: weights to recalibrate
        data: dataset root (default: the one recorded at training)
        stride: detector stride (default: the recorded one)
        false_alarm_rate: share of normal frames (or images) flagged at the threshold
            (default: as trained)
        smoothing: moving-mean lengths (frames) to compare for every rule, e.g. 1,3,5 (1:
            none)
        rule_by: image autoencoders: choose the rule by synthetic defects or by the
            validation split's real defective images (default: as trained)
        threshold_by: image autoencoders: each rule's threshold at --false-alarm-rate on
            the normal validation images, or the best balanced accuracy against the
            synthetic defects or the validation split's real defective images (default: as
            trained)
        false_alarm_cap: image autoencoders, --threshold-by synthetic or defects: the
            largest share of normal validation images flagged (default: as trained, else
            0.1)
        device: where the network runs
    """

    model: str = flag(str(WEIGHTS), show_default=WEIGHTS.name)
    data: str | None = None
    stride: int | None = None
    false_alarm_rate: float | None = None
    smoothing: str = "1"
    rule_by: Literal["synthetic", "defects"] | None = None
    threshold_by: Literal["false_alarms", "synthetic", "defects"] | None = None
    false_alarm_cap: float | None = None
    device: str = flag("auto", choices=DEVICES)


@dataclass(frozen=True, kw_only=True)
class EvaluateOptions:
    """``vadstream evaluate``.

    Args:
        model: weights to evaluate
        data: dataset root, e.g. ../shared/data/UCSDped2, or a folder of class folders,
            e.g. ../shared/data/casting/train
        normal: the normal class folder of an image set (default: recognised by name, e.g.
            ok_front); implies image evaluation
        split: images: all of --data, or only the validation split recorded in the
            weights (--data their training folder)
        stride: detector stride (default: the calibrated one)
        device: where the network runs
        precision: score through the live detector's network at this precision (default:
            the trained network as it is)
        backend: the live detector's backend (onnxruntime: fp32 unless --precision says
            otherwise)
        json: write the results here
        plots: folder for ROC and per-clip plots (images: roc.png and heatmaps.png)
    """

    model: str = flag(str(WEIGHTS), show_default=WEIGHTS.name)
    data: str
    normal: str | None = None
    split: Literal["all", "val"] = "all"
    stride: int | None = None
    device: str = flag("auto", choices=DEVICES)
    precision: str | None = flag(None, choices=PRECISIONS)
    backend: str = flag("mxnet", choices=BACKENDS)
    json: Path | None = None
    plots: Path | None = None


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``train``, ``calibrate`` and ``evaluate``."""
    t = sub.add_parser("train", help="train a model: on normal footage, or on an image "
                       "folder per class (data.kind: images)")
    add_options(t, TrainOptions)
    t.set_defaults(func=cmd_train)

    k = sub.add_parser("calibrate", help="re-derive the rule and threshold of trained weights "
                       "from their held-out normal clips")
    add_options(k, CalibrateOptions)
    k.set_defaults(func=cmd_calibrate)

    e = sub.add_parser("evaluate", help="frame and pixel AUC on a UCSD-style test set; image "
                       "AUC, accuracy, precision, recall, F1 on class folders of images")
    add_options(e, EvaluateOptions)
    e.set_defaults(func=cmd_evaluate)


def cmd_train(args: argparse.Namespace) -> int:
    """Train the config's model; say where the weights went."""
    from train.config import load_train_config
    from train.dispatch import train_job

    opts = options(args, TrainOptions)
    path = train_job(load_train_config(opts.config), opts.data, opts.out, device=opts.device,
                     resume=opts.resume)
    print(f"wrote {path}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Recalibrate the weights; print what was chosen."""
    opts = options(args, CalibrateOptions)
    try:
        smoothing = tuple(int(k) for k in opts.smoothing.split(",") if k.strip())
        if not smoothing or min(smoothing) < 1:
            raise ValueError
    except ValueError:
        raise SystemExit(f"vadstream calibrate: --smoothing takes frame counts of at least 1, "
                         f"comma-separated (e.g. 1,3,5), got {opts.smoothing!r}") from None
    from train.dispatch import recalibrate_weights

    print(recalibrate_weights(opts.model, opts.data, stride=opts.stride,
                              false_alarm_rate=opts.false_alarm_rate, device=opts.device,
                              smoothing=smoothing, rule_by=opts.rule_by,
                              threshold_by=opts.threshold_by,
                              false_alarm_cap=opts.false_alarm_cap))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate the weights; print the table, write the JSON and plots asked for."""
    from train.dispatch import evaluate_weights

    opts = options(args, EvaluateOptions)
    evaluation = evaluate_weights(opts.model, opts.data, normal=opts.normal, split=opts.split,
                                  stride=opts.stride, device=opts.device,
                                  precision=opts.precision, backend=opts.backend)
    print(evaluation.table)
    evaluation.write(opts.json, opts.plots)
    return 0
