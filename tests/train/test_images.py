"""Image families end to end on real conveyor-line images: tiny training runs, evaluation
(library and CLI), where a CAM looks, and the data-set helpers."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest
import yaml
from mxnet import autograd, gluon

from models.contract import InputContract
from models.registry import get_family, get_model
from models.scoring import ScorerConfig
from models.weights import WeightsMeta, load_calibration_arrays, load_weights
from stream.capture.frames import is_image_dataset, list_frames
from tests.conftest import DATA
from train.evaluate_images import evaluate_images
from train.image_trainer import ImageTrainConfig
from train.images import class_folders, split_indices

CASTING = DATA / "casting" / "train"
CRACKS = DATA / "cracks"
#: Per family: tiny network arguments, their input contract, the data set it trains on
#: (its normal class named in the config, or none: recognised by name).
TINY = {
    "cam": ({"size": 32, "channels": 4, "blocks": 2},
            InputContract(size=32, mean=0.5, std=0.25), "cracks", None),
    "ssim_ae": ({"size": 32, "channels": 4, "code": 4}, InputContract(size=32), "casting",
                "ok_front"),
    "frame_cae": ({"size": 32, "channels": 4, "bottleneck": 8}, InputContract(size=32),
                  "casting", "ok_front"),
}
TINY_CONFIG = ImageTrainConfig(epochs=3, batch_size=4, learning_rate=3e-3, val_share=0.25,
                               patience=3, augment=False)


def class_subset(root: Path, source: Path, per_class: int = 8) -> Path:
    """``root`` with a folder per class folder of ``source``, of links to its first
    ``per_class`` images."""
    for folder in sorted(p for p in source.iterdir() if p.is_dir()):
        (root / folder.name).mkdir(parents=True)
        for path in list_frames(folder)[:per_class]:
            (root / folder.name / path.name).symlink_to(path)
    return root


@pytest.fixture(scope="module")
def subsets(tmp_path_factory) -> dict[str, Path]:
    """Eight real images per class of each data set."""
    root = tmp_path_factory.mktemp("images")
    return {"casting": class_subset(root / "casting", CASTING),
            "cracks": class_subset(root / "cracks", CRACKS)}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, subsets) -> dict[str, Path]:
    """Tiny weights of each image family, trained on demand (once per module) by
    ``vadstream train`` from a config with ``data.kind: images``."""
    from stream.apps.cli import main

    out = tmp_path_factory.mktemp("weights")

    class Trained(dict):
        def __missing__(self, name: str) -> Path:
            args, contract, source, normal = TINY[name]
            data = {"kind": "images", "root": str(subsets[source]), "out": str(out / name),
                    "normal": normal}
            config = out / f"{name}.yaml"
            config.write_text(yaml.safe_dump({
                "data": data, "model": {"name": name, **args},
                "contract": {"size": contract.size, "mean": contract.mean,
                             "std": contract.std},
                "training": asdict(TINY_CONFIG)}))
            if main(["train", "--config", str(config), "--device", "cpu"]) != 0:
                raise RuntimeError(f"vadstream train --config {config} failed")
            self[name] = out / f"{name}.params"
            return self[name]
    return Trained()


@pytest.mark.parametrize("name", sorted(TINY))
def test_a_tiny_run_learns_and_writes_calibrated_weights(trained, name):
    params = trained[name]
    stem = params.with_suffix("")
    history = json.loads(stem.with_name(stem.name + ".state.json").read_text())["history"]
    assert len(history) == TINY_CONFIG.epochs
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    net, meta = load_weights(stem)
    assert meta.model == name and meta.window == 1 and meta.contract.size == 32
    assert meta.provenance["history"] == history
    assert meta.provenance["classes"] == {"cracks": {"Negative": 0, "Positive": 1},
                                          "casting": {"def_front": 1, "ok_front": 0}
                                          }[TINY[name][2]]
    calibration = json.loads(stem.with_suffix(".json").read_text())["calibration"]
    family = get_family(name)
    if family.labelled:
        assert calibration["rule"] == "probability"
        assert 0 < calibration["thresholds"]["probability"] < 1
    else:
        assert calibration["rule"] in family.rules(meta)
        assert set(calibration["thresholds"]) == set(family.rules(meta))
        arrays = load_calibration_arrays(stem, meta)
        assert arrays["baseline"].shape == arrays["spread"].shape
    # the scorer the weights carry builds at their own threshold
    scorer = family.scorer(meta, load_calibration_arrays(stem, meta), ScorerConfig())
    assert scorer.rule == calibration["rule"]


RESULT_KEYS = {"image_auc", "accuracy", "precision", "recall", "f1", "threshold", "counts",
               "model", "weights", "rule", "data", "images", "split"}


@pytest.mark.parametrize(("name", "data"), [("cam", "casting"), ("ssim_ae", "cracks")])
def test_evaluate_images_reports_every_figure(trained, subsets, name, data):
    """Weights of one data set on the other's images: any figures, but every one there
    and in range."""
    weights = trained[name].with_suffix("")
    result, details = evaluate_images(weights, subsets[data])
    assert set(result) == RESULT_KEYS
    assert result["model"] == name and result["images"] == 16
    assert 0 <= result["image_auc"] <= 1
    for key in ("accuracy", "precision", "recall", "f1"):
        assert 0 <= result[key] <= 1, key
    counts = result["counts"]
    assert sum(c["images"] for c in counts.values()) == result["images"]
    assert {c["label"] for c in counts.values()} == {"normal", "defect"}
    assert all(0 <= c["flagged"] <= c["images"] for c in counts.values())
    flagged_defects = sum(c["flagged"] for c in counts.values() if c["label"] == "defect")
    assert result["recall"] == pytest.approx(flagged_defects / 8)
    # every image is in exactly one heat-map row, at most six of it shown
    assert list(details.heatmaps) == ["defect, flagged", "defect, missed", "normal, passed",
                                      "normal, flagged"]
    assert sum(map(len, details.heatmaps.values())) <= 24
    for image, heat, _ in (c for row in details.heatmaps.values() for c in row):
        assert image.shape == heat.shape == (32, 32)
        assert 0 <= heat.min() and heat.max() <= 1


def test_evaluate_cli_writes_json_and_both_plots(trained, subsets, tmp_path, capsys):
    from stream.apps.cli import main

    weights = trained["cam"].with_suffix("")
    code = main(["evaluate", "--model", str(weights), "--data", str(subsets["cracks"]),
                 "--device", "cpu", "--json", str(tmp_path / "out.json"),
                 "--plots", str(tmp_path / "plots")])
    assert code == 0
    result = json.loads((tmp_path / "out.json").read_text())
    assert set(result) == RESULT_KEYS
    assert result["counts"]["Negative"]["label"] == "normal"
    assert (tmp_path / "plots" / "roc.png").stat().st_size > 1000
    assert (tmp_path / "plots" / "heatmaps.png").stat().st_size > 1000
    out = capsys.readouterr().out
    assert "image AUC" in out and "Positive" in out


def test_evaluate_refuses_video_weights_and_plain_folders(tiny_weights, trained, subsets,
                                                          tmp_path, capsys):
    from stream.apps.cli import main

    with pytest.raises(ValueError, match="windows of 4 frames.*one-image model"):
        evaluate_images(tiny_weights, subsets["casting"])
    shots = tmp_path / "shots"          # loose images, no class folders
    shots.mkdir()
    for path in list_frames(CASTING / "ok_front")[:2]:
        (shots / path.name).symlink_to(path)
    cam = str(trained["cam"].with_suffix(""))
    with pytest.raises(FileNotFoundError, match="shots has no subfolders of images"):
        evaluate_images(cam, shots)
    # --normal asks for image evaluation: the CLI says in one line what is wrong
    code = main(["evaluate", "--model", cam, "--data", str(shots), "--normal", "ok",
                 "--device", "cpu"])
    assert code == 2
    assert "no subfolders of images" in capsys.readouterr().err


def test_engine_runs_tiny_cam_weights(trained, subsets):
    from stream.detector.engine import Engine

    engine = Engine(trained["cam"].with_suffix(""), device="cpu", precision="fp32",
                    max_batch=2)
    engine.batch[:2] = np.random.default_rng(0).normal(size=engine.batch[:2].shape)
    out = engine.run(2)
    m = 32 // 2 ** 2
    assert out.shape == (2, 1, 1 + 2 * m * m)
    assert np.isfinite(out).all()


PATCH = 7


def _patch_images(n: int, rng: np.random.Generator, side: int = 32, patch: int = PATCH
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noise images, half of them (label 1) with a bright square at a random place; the
    squares' top-left corners (-1 where none)."""
    x = rng.normal(0, 1, (n, side, side)).astype(np.float32)
    labels = (np.arange(n) % 2).astype(np.float32)
    corners = np.full((n, 2), -1)
    for i in np.flatnonzero(labels):
        y0, x0 = rng.integers(0, side - patch + 1, 2)
        x[i, y0:y0 + patch, x0:x0 + patch] += 3.0
        corners[i] = y0, x0
    return x, labels, corners


def test_the_cam_of_a_bright_patch_peaks_on_it():
    mx.random.seed(0)
    rng = np.random.default_rng(0)
    args = {"size": 32, "channels": 8, "blocks": 2}
    net = get_model("cam", **args)
    net.initialize(mx.init.Xavier())
    net.hybridize()
    family = get_family("cam")
    trainer = gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 1e-2})
    for _ in range(60):
        x, y, _ = _patch_images(32, rng)
        with autograd.record():
            loss = family.loss(net, mx.nd.array(x[:, None]), mx.nd.array(y))
        loss.backward()
        trainer.step(len(x))
    meta = WeightsMeta(model="cam", model_args=args, window=1,
                       contract=InputContract(size=32, mean=0.5, std=0.25))
    form = family.inference(net, meta, mx.cpu())[1]
    scorer = family.scorer(meta, {}, ScorerConfig(threshold=0.5))
    x, y, corners = _patch_images(40, rng)
    s = scorer.score(form(mx.nd.array(x[:, None])).asnumpy()[:, 0], x)
    assert (s.anomalous == y.astype(bool)).mean() >= 0.9      # it did learn the task
    patches = np.flatnonzero(y)
    hits = 0
    for i in patches:
        py, px = np.unravel_index(np.argmax(s.sums[i]), s.sums[i].shape)
        y0, x0 = corners[i]
        # inside the square (rows and columns corner .. corner + PATCH - 1) or 2 px from it
        hits += y0 - 2 <= py <= y0 + PATCH + 1 and x0 - 2 <= px <= x0 + PATCH + 1
    assert hits / len(patches) >= 0.8


def test_split_indices_is_seeded_stratified_and_disjoint():
    labels = np.r_[np.zeros(30, int), np.ones(10, int)]
    train, val = split_indices(labels, 0.2, seed=3)
    again = split_indices(labels, 0.2, seed=3)
    other = split_indices(labels, 0.2, seed=4)
    assert np.array_equal(train, again[0]) and np.array_equal(val, again[1])
    assert not np.array_equal(val, other[1])
    assert not set(train) & set(val) and len(train) + len(val) == len(labels)
    assert (labels[val] == 0).sum() == 6 and (labels[val] == 1).sum() == 2
    with pytest.raises(ValueError, match="val_share"):
        split_indices(labels, 1.0, seed=0)


def test_class_folders_name_the_folders_and_ask_for_normal(tmp_path, subsets):
    assert class_folders(subsets["casting"]) == {"def_front": 1, "ok_front": 0}
    assert class_folders(subsets["cracks"]) == {"Negative": 0, "Positive": 1}
    assert is_image_dataset(subsets["casting"]) and not is_image_dataset(DATA / "UCSDped2")
    root = tmp_path / "parts"
    for name in ("bent", "clean"):
        (root / name).mkdir(parents=True)
        for path in list_frames(CASTING / "ok_front")[:2]:
            (root / name / path.name).symlink_to(path)
    with pytest.raises(ValueError, match="bent, clean.*--normal"):
        class_folders(root)
    assert class_folders(root, normal="clean") == {"bent": 1, "clean": 0}
    with pytest.raises(ValueError, match="--normal 'good' is not a class folder.*bent, clean"):
        class_folders(root, normal="good")



def test_evaluate_split_val_scores_the_recorded_validation_images(trained, subsets):
    weights = trained["cam"]
    source = TINY["cam"][2]
    result, _ = evaluate_images(weights, subsets[source], split="val")
    split = load_weights(weights)[1].provenance["split"]
    assert result["split"] == "val" and result["images"] == split["val"] < 16
    other = "casting" if source == "cracks" else "cracks"
    with pytest.raises(ValueError, match="--split all"):
        evaluate_images(weights, subsets[other], split="val")


def test_denoising_corrupts_about_its_share_and_only_within_range():
    from train.image_trainer import corrupt_images

    rng = np.random.default_rng(0)
    x = rng.random((200, 32, 32)).astype(np.float32)
    clean = x.copy()
    out = corrupt_images(x, 0.5, rng, 0.0, 1.0)
    changed = (np.abs(out - x) > 1e-6).any(axis=(1, 2))
    assert 70 <= changed.sum() <= 130
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert (x == clean).all()          # the clean batch is the target: left as it was


def test_calibrate_chooses_an_image_autoencoders_rule_by_its_validation_defects(trained,
                                                                              tmp_path):
    import shutil

    from stream.apps.cli import main

    source = trained["ssim_ae"]
    for suffix in (".params", ".json", ".calib"):
        shutil.copy(source.with_suffix(suffix), tmp_path / f"w{suffix}")
    assert main(["calibrate", "--model", str(tmp_path / "w"), "--rule-by", "defects",
                 "--device", "cpu"]) == 0
    _, meta = load_weights(tmp_path / "w")
    cal = meta.calibration
    real = cal["validation"]["real_defect_auc"]
    assert cal["selection"]["by"].startswith("real defective")
    assert cal["rule"] == max(real, key=real.get)
    assert cal["selection"]["synthetic_rule"] in real
    assert meta.provenance["config"]["rule_by"] == "defects"


def test_a_changed_data_set_is_refused_where_the_split_is_recomputed(trained, subsets,
                                                                     tmp_path):
    """evaluate --split val, vadstream calibrate and the conveyor sample recompute the split;
    on a folder whose images changed since training (the same count: one swapped) they
    refuse, instead of calling training images validation ones."""
    import shutil

    from stream.apps.conveyor import validation_parts
    from train.image_trainer import recalibrate_images

    source = TINY["cam"][2]
    data = tmp_path / "data"
    shutil.copytree(subsets[source], data, symlinks=True)
    weights = tmp_path / "w"
    for suffix in (".params", ".json"):
        shutil.copy(trained["cam"].with_suffix(suffix), weights.with_suffix(suffix))
    meta = json.loads(weights.with_suffix(".json").read_text())
    meta["provenance"]["data"] = str(data)
    weights.with_suffix(".json").write_text(json.dumps(meta))
    result, _ = evaluate_images(weights, data, split="val")          # unchanged: fine
    assert result["images"] == meta["provenance"]["split"]["val"]
    normal = next(n for n, label in meta["provenance"]["classes"].items() if label == 0)
    first = list_frames(data / normal)[0]
    unseen = list_frames(CRACKS / normal)[-1]
    first.unlink()
    (data / normal / unseen.name).symlink_to(unseen)
    with pytest.raises(ValueError, match="does not hold the images"):
        evaluate_images(weights, data, split="val")
    with pytest.raises(ValueError, match="does not hold the images"):
        recalibrate_images(weights)
    with pytest.raises(ValueError, match="does not hold the images"):
        validation_parts(load_weights(weights)[1])


def test_a_resumed_run_is_the_uninterrupted_one(subsets, tmp_path):
    """One epoch, then --resume to two, ends with the weights of two epochs in one go, with
    augmentation and denoising drawing from the generator between the shuffles."""
    from train.image_trainer import train_images

    args, contract, source, normal = TINY["ssim_ae"]
    config = {"patience": 5, "batch_size": 4, "augment": True, "denoise": 0.5}

    def run(stem: str, epochs: int, resume: bool = False) -> None:
        train_images(subsets[source], tmp_path / stem, "ssim_ae", args, contract,
                     ImageTrainConfig(epochs=epochs, **config), normal=normal, resume=resume)

    run("resumed", 1)
    run("resumed", 2, resume=True)
    run("straight", 2)
    a, _ = load_weights(tmp_path / "resumed.last")
    b, _ = load_weights(tmp_path / "straight.last")
    pa, pb = a.collect_params(), b.collect_params()
    for name, param in pa.items():
        other = pb[b.prefix + name[len(a.prefix):]]
        np.testing.assert_allclose(param.data().asnumpy(), other.data().asnumpy(),
                                   rtol=1e-5, atol=1e-6, err_msg=name)


def _weights_copy(source: Path, stem: Path) -> Path:
    import shutil

    for suffix in (".params", ".json", ".calib"):
        shutil.copy(source.with_suffix(suffix), stem.with_suffix(suffix))
    return stem


def test_calibrate_sets_an_autoencoders_threshold_by_its_validation_defects(trained, subsets,
                                                                          tmp_path):
    """On real casting images: ``--threshold-by defects`` puts the rule's threshold where
    the balanced accuracy of the validation split's normal and defective parts is the best
    any threshold gives, and ``vadstream evaluate --split val`` finds the figures the
    calibration recorded."""
    from stream.apps.cli import main

    weights = _weights_copy(trained["frame_cae"], tmp_path / "w")
    assert main(["calibrate", "--model", str(weights), "--threshold-by", "defects",
                 "--false-alarm-cap", "1", "--device", "cpu"]) == 0
    _, meta = load_weights(weights)
    cal = meta.calibration
    assert cal["operating_point"]["by"] == "defects"
    assert "the thresholds" in cal["validation"]["note"]
    assert meta.provenance["config"]["threshold_by"] == "defects"
    result, details = evaluate_images(weights, subsets["casting"], split="val")
    labels, values = details.labels.astype(bool), details.ranking
    assert result["rule"] == cal["rule"] and result["threshold"] == cal["thresholds"][cal["rule"]]

    def balanced(threshold: float) -> float:
        flagged = values >= threshold
        return (flagged[labels].mean() + (~flagged[~labels]).mean()) / 2
    best = max(balanced(t) for t in [*values, np.inf])      # every distinct decision
    assert balanced(result["threshold"]) == best
    recorded = cal["validation"]["at_threshold"][cal["rule"]]
    assert recorded["accuracy"] == pytest.approx(result["accuracy"])
    assert recorded["recall"] == pytest.approx(result["recall"])


def test_calibrate_sets_thresholds_by_synthetic_defects_within_the_false_alarm_cap(trained,
                                                                                  tmp_path):
    """``--threshold-by synthetic``: no label; at a cap of 0 no normal validation image is
    flagged by any rule's threshold, and the cap and the way are recorded. An unknown way
    is refused with the valid ones."""
    from stream.apps.cli import main
    from train.image_trainer import recalibrate_images

    weights = _weights_copy(trained["frame_cae"], tmp_path / "w")
    assert main(["calibrate", "--model", str(weights), "--threshold-by", "synthetic",
                 "--false-alarm-cap", "0", "--device", "cpu"]) == 0
    cal = load_weights(weights)[1].calibration
    point = cal["operating_point"]
    assert point["by"] == "synthetic" and point["false_alarm_cap"] == 0
    assert set(point["validation_false_alarm_rate"]) == set(cal["thresholds"])
    assert all(rate == 0 for rate in point["validation_false_alarm_rate"].values())
    assert cal["validation"]["note"].endswith("reported only")
    with pytest.raises(ValueError, match="threshold_by must be one of false_alarms, synthetic"):
        recalibrate_images(weights, threshold_by="youden")


def test_weights_from_before_threshold_by_keep_their_false_alarm_thresholds(trained,
                                                                           tmp_path):
    """Recalibrating weights whose provenance has no ``threshold_by`` keeps the old way:
    each rule's threshold at the recorded false-alarm rate."""
    from train.image_trainer import recalibrate_images
    from train.metrics import threshold_at

    weights = _weights_copy(trained["frame_cae"], tmp_path / "w")
    meta = json.loads(weights.with_suffix(".json").read_text())
    del meta["provenance"]["config"]["threshold_by"]
    weights.with_suffix(".json").write_text(json.dumps(meta))
    cal = recalibrate_images(weights)
    assert cal["operating_point"]["by"] == "false_alarms"
    assert cal["thresholds"] == cal["operating_point"]["false_alarm_thresholds"]
    result, details = evaluate_images(weights, meta["provenance"]["data"], split="val")
    normal = details.ranking[details.labels == 0]
    assert result["threshold"] == threshold_at(normal, cal["false_alarm_rate"])
