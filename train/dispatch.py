"""Training, calibration and evaluation whatever the data: video clips or class folders
of images. Each function picks the clip or the image path here, so the commands call one
function and never branch on the kind of data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from train.config import TrainJob


def train_job(job: TrainJob, data: str | None = None, out: str | Path | None = None,
              device: str = "auto", resume: bool = False) -> Path:
    """Train the model a training config describes (``data.kind``: clips or images).

    Args:
        job: The training config (``train.config.load_train_config``).
        data: Dataset root, replacing the config's.
        out: Weights stem to write, replacing the config's.
        device: ``auto``, ``cpu`` or ``gpu``.
        resume: Go on from the optimiser state saved beside ``out``.

    Returns:
        The weights written.
    """
    if job.kind == "images":
        from train.image_trainer import train_images

        return train_images(data or job.data, out or job.out, model=job.model,
                            model_args=job.model_args, contract=job.contract,
                            config=job.training, scorer=job.scorer, normal=job.normal,
                            ctx=job.context(device), resume=resume)
    from train.trainer import train

    return train(data or job.data, out or job.out, model=job.model,
                 model_args=job.model_args, contract=job.contract, config=job.training,
                 scorer=job.scorer, stride=job.stride, ctx=job.context(device),
                 resume=resume)


def recalibrate_weights(model: str, data: str | None = None, stride: int | None = None,
                        false_alarm_rate: float | None = None, device: str = "auto",
                        smoothing: tuple[int, ...] = (1,), rule_by: str | None = None,
                        threshold_by: str | None = None,
                        false_alarm_cap: float | None = None) -> str:
    """Re-derive the rule and threshold of trained weights and save them with the weights.

    Weights trained on an image set are recalibrated on its validation split
    (``rule_by``, ``threshold_by``, ``false_alarm_cap``); weights trained on clips on their
    held-out normal clips (``data``, ``stride``, ``smoothing``).

    Returns:
        One line that says what was chosen.
    """
    from models.weights import read_meta
    from stream.detector.engine import pick_context

    if "classes" in read_meta(model).provenance:      # trained on an image data set
        from train.image_trainer import recalibrate_images

        cal = recalibrate_images(model, rule_by=rule_by, false_alarm_rate=false_alarm_rate,
                                 ctx=pick_context(device), threshold_by=threshold_by,
                                 false_alarm_cap=false_alarm_cap)
        threshold = cal["thresholds"][cal["rule"]]
        real = cal.get("validation", {}).get("real_defect_auc") or {}
        at = cal.get("validation", {}).get("at_threshold", {}).get(cal["rule"])
        return (f"rule {cal['rule']} threshold {threshold:.4g} by "
                f"{cal['operating_point']['by']}"
                + (f" (validation defects' AUC: "
                   f"{', '.join(f'{r} {a:.3f}' for r, a in real.items())})" if real else "")
                + (f"; validation accuracy {at['accuracy']:.3f}, recall {at['recall']:.3f}, "
                   f"false alarms {at['false_alarm_rate']:.3f}" if at else ""))
    from train.calibrate import recalibrate

    cal = recalibrate(model, data, stride=stride, false_alarm_rate=false_alarm_rate,
                      ctx=pick_context(device), smoothing=smoothing)
    selection = cal.get("selection", {})
    by = selection.get("mean_auc") or {f"smoothing {k}": v["mean_auc"]
                                       for k, v in selection.get("smoothing", {}).items()}
    mean = ", ".join(f"{r} {a:.3f}" for r, a in by.items())
    return (f"rule {cal['rule']} threshold {cal['thresholds'][cal['rule']]:.2f} over "
            f"{cal['frames']} normal frames, smoothed over {cal['smooth']} frame(s) "
            f"(synthetic-anomaly AUC: {mean})")


@dataclass(frozen=True)
class Evaluation:
    """What :func:`evaluate_weights` found.

    Args:
        result: The figures (as the JSON file holds them).
        table: The figures as text, to print.
        write: ``write(json_path, plots_folder)`` writes the JSON and the plots (None:
            that one not).
    """

    result: dict
    table: str
    write: Callable[[Path | None, Path | None], None]


def evaluate_weights(model: str, data: str, normal: str | None = None, split: str = "all",
                     stride: int | None = None, device: str = "auto",
                     precision: str | None = None, backend: str = "mxnet") -> Evaluation:
    """Evaluate trained weights: frame and pixel AUC on a UCSD-style test set of clips;
    image AUC, accuracy, precision, recall and F1 on class folders of images.

    Args:
        model: Weights stem.
        data: Dataset root, or a folder of class folders.
        normal: The normal class folder of an image set (implies images).
        split: Images: ``all`` of ``data``, or the ``val`` split recorded in the weights.
        stride: Clips: detector stride (None: the calibrated one).
        device: ``auto``, ``cpu`` or ``gpu``.
        precision: Clips: score through the live detector's network at this precision.
        backend: Clips: the live detector's backend.

    Raises:
        ValueError: ``precision`` or ``backend`` given for an image set.
    """
    from stream.capture.frames import is_image_dataset
    from stream.detector.engine import pick_context

    if normal is not None or is_image_dataset(data):
        if precision is not None or backend != "mxnet":
            raise ValueError("--precision and --backend evaluate the live detector's network "
                             "on video clips; an image set is scored by the trained network: "
                             "leave them out")
        from train.evaluate_images import evaluate_images, format_image_table, write_image_outputs

        result, details = evaluate_images(model, data, normal=normal, ctx=pick_context(device),
                                          split=split)
        return Evaluation(result, format_image_table(result),
                          lambda json, plots: write_image_outputs(result, details, json, plots))
    from train.evaluate import evaluate, format_table, write_outputs

    result, clips = evaluate(model, data, stride=stride, ctx=pick_context(device),
                             precision=precision, backend=backend)
    return Evaluation(result, format_table(result),
                      lambda json, plots: write_outputs(result, clips, json, plots))
