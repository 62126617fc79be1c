"""Every built-in model family, one parametrised test (anomalib's style): a tiny training
run on real Ped2 frames lowers its loss, writes weights that load, is calibrated only for
the rules the family can compute, and runs in the detector's engine."""

import shutil

import mxnet as mx
import numpy as np
import pytest

from models import get_family, load_weights, model_names, read_meta
from models.scoring import RULES, ScorerConfig
from models.weights import load_calibration_arrays
from stream.detector.engine import Engine
from tests.conftest import PED2, TINY_FAMILIES, TINY_VARIANTS
from train.calibrate import recalibrate
from train.data import load_clip

#: Families trained on image data sets only (tests/train/test_images.py): the CAM classifier
#: needs labels, the SSIM autoencoder is the conveyor's.
IMAGE_FAMILIES = {"cam", "ssim_ae"}
#: Families built from trained weights, not trained (tests/models/test_fused.py).
COMPOSED_FAMILIES = {"fused"}


def test_every_builtin_family_has_tiny_arguments():
    builtin = {n for n in model_names() if type(get_family(n)).__module__.startswith("models.")}
    trained = builtin - IMAGE_FAMILIES - COMPOSED_FAMILIES
    assert trained == set(TINY_FAMILIES) >= {"stae", "predictor", "frame_cae", "stacked_ae"}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", sorted([*TINY_FAMILIES, *TINY_VARIANTS]))
def test_tiny_training_writes_weights_the_engine_runs(name, tiny_trained):
    path = tiny_trained(name)
    model, args = TINY_VARIANTS.get(name) or (name, TINY_FAMILIES[name][0])
    family = get_family(model)
    net, meta = load_weights(path)
    assert meta.model == model and meta.model_args == args
    assert meta.window == family.window(meta.model_args)
    history = meta.provenance["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[1]["train_loss"] < history[0]["train_loss"]

    temporal = family.temporal(meta)
    cal = meta.calibration
    rules = list(family.rules(meta))
    assert cal["rules"] == rules and cal["rule"] in rules
    assert cal["stride"] == min(2, temporal.scorable)
    reconstruction = family.calibrator is None   # else the family calibrates its own scores
    if reconstruction:
        assert set(cal["thresholds"]) == set(cal["selection"]["mean_auc"]) == set(rules)
        if temporal.lookback == 0:  # no frame before a scored one in its output: no motion
            assert rules == [r for r in RULES if r != "motion"]
        else:
            assert temporal.lookback == 1 and rules == list(RULES)
        assert set(load_calibration_arrays(path, meta)) == {"baseline", "spread"}
    else:
        assert set(cal["thresholds"]) == set(rules)

    frames = load_clip(PED2 / "Test" / "Test001", meta.contract, count=2 * meta.window)
    windows = frames.reshape(2, meta.window, *meta.contract.shape)
    engine = Engine(path, device="cpu", precision="fp32", max_batch=2)
    assert engine.precision == "fp32"
    out = engine.reconstruct(windows)
    # A reconstruction outputs the whole window, a predictor the frame it predicts.
    assert out.shape == (2, *family.output_shape(meta, temporal.scorable))
    if reconstruction:
        assert out.shape == (2, temporal.scorable, *meta.contract.shape)
    np.testing.assert_allclose(out, net(mx.nd.array(windows)).asnumpy(), atol=1e-4)
    scorer = family.scorer(meta, load_calibration_arrays(path, meta), ScorerConfig())
    offset = meta.window - temporal.scorable
    scores = scorer.score(out[0], windows[0, offset:], first=temporal.lookback)
    assert scorer.rule == cal["rule"]
    assert len(scores.score) == temporal.scorable - temporal.lookback
    assert np.isfinite(scores.score).all() and (scores.error > 0).all()
    if reconstruction:
        assert np.isfinite(scores.relative).all()


def test_recalibrating_a_one_frame_model_keeps_to_the_rules_it_can_compute(tiny_trained,
                                                                         tmp_path):
    trained = tiny_trained("frame_cae")
    for suffix in (".params", ".json", ".calib"):
        shutil.copy(trained.with_suffix(suffix), tmp_path / f"w{suffix}")
    cal = recalibrate(tmp_path / "w", stride=5)
    assert cal["rules"] == ["area", "peak", "error", "relative", "top"]
    assert set(cal["thresholds"]) == set(cal["rules"])
    assert cal["stride"] == 1          # one frame per window: every window scores its frame
    assert read_meta(tmp_path / "w").calibration == cal


def test_vadstream_calibrate_recalibrates_object_ae_weights_and_says_so(tiny_trained, tmp_path,
                                                                        capsys):
    trained = tiny_trained("object_ae")
    for suffix in (".params", ".json", ".calib"):
        if trained.with_suffix(suffix).exists():
            shutil.copy(trained.with_suffix(suffix), tmp_path / f"w{suffix}")
    from stream.apps.cli import main

    assert main(["calibrate", "--model", str(tmp_path / "w")]) == 0
    line = capsys.readouterr().out
    cal = read_meta(tmp_path / "w").calibration
    assert cal["rule"] == "object" and f"{cal['thresholds']['object']:.2f}" in line
    assert "smoothing 1" in line and "smoothing 5" in line
