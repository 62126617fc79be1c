"""The built-in families live through real processes: one `vadstream run`, one detector, a
walkway stream on tiny trained stacked-frame AE weights (the detector's model) and another
on tiny trained frame CAE weights (the stream's own model, window 1); and a next-frame
predictor's stream against the offline scorer."""


import json
import shutil

import mxnet as mx
import pytest

from models import get_family, load_calibration_arrays, load_weights, read_meta
from models.scoring import ScorerConfig
from tests.conftest import PED2, run_models_live
from train.data import load_clip
from train.offline import score_clip


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_frame_cae_and_stacked_ae_streams_in_one_detector(tiny_trained, tmp_path):
    stacked, cae = tiny_trained("stacked_ae"), tiny_trained("frame_cae")
    scores, status = run_models_live(
        tmp_path, stacked,
        [{"id": "stacked", "source": str(PED2 / "Test" / "Test001")},
         {"id": "cae", "source": str(PED2 / "Test" / "Test002"), "model": str(cae)}])
    # Each stream is scored by its own model under the rule and threshold its weights
    # were calibrated for; the frame CAE's calibration never considers motion.
    for stream, weights in (("stacked", stacked), ("cae", cae)):
        cal = read_meta(weights).calibration
        got = scores[stream]
        assert {s["rule"] for s in got} == {cal["rule"]}
        assert {s["threshold"] for s in got} == {cal["thresholds"][cal["rule"]]}
        assert all(s["scores"]["error"] > 0 for s in got)
        assert len({(s["seq"], s["ts"]) for s in got}) == len(got)     # none scored twice
    assert read_meta(cae).calibration["rule"] != "motion"
    assert all(s["scores"]["motion"] == 0 for s in scores["cae"])
    assert any(s["scores"]["motion"] > 0 for s in scores["stacked"])
    models = {m["model"]: m for m in status["models"]}
    assert set(models) == {"stacked_ae", "frame_cae"}
    assert models["frame_cae"]["window"] == 1 and models["frame_cae"]["stride"] == 1
    assert models["stacked_ae"]["window"] == 4 and models["stacked_ae"]["stride"] == 2
    assert {m["precision"] for m in models.values()} == {"fp32"}
    assert status["streams"]["cae"]["model"] == str(cae)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("variant, smooth", [("predictor", None), ("predictor", 4),
                                            ("predictor_motion", None)])
@pytest.mark.slow
def test_predictor_stream_scores_live_as_offline(tiny_trained, tmp_path, variant, smooth):
    """A next-frame predictor through `vadstream run`: each frame scored once from the
    frames before it (the first `window - 1` frames of the clip never), with the scores
    the offline scorer gives the same clip; with its calibration's smoothing, or a 4-frame
    moving mean forced into it (scores then the stream's smoothed rule values); and with a
    motion input (its encoder reads each frame and the one before it)."""
    weights = tiny_trained(variant)
    if smooth is not None:
        for suffix in (".params", ".calib"):
            shutil.copy(weights.with_suffix(suffix), tmp_path / f"w{suffix}")
        meta = json.loads(weights.with_suffix(".json").read_text())
        meta["calibration"]["smooth"] = smooth
        (tmp_path / "w.json").write_text(json.dumps(meta))
        weights = tmp_path / "w"
    scores, status = run_models_live(
        tmp_path, weights, [{"id": "pred", "source": str(PED2 / "Test" / "Test001")}])
    net, meta = load_weights(weights)
    cal = meta.calibration
    got = scores["pred"]
    assert {s["rule"] for s in got} == {cal["rule"]}
    unscored = meta.window - 1           # frames before the first window's last
    first_pass = [s for s in got if s["seq"] < 120]     # before the clip loops
    assert [s["frame"] for s in first_pass] == list(range(unscored + 1, unscored + 1 +
                                                          len(first_pass)))
    frames = load_clip(PED2 / "Test" / "Test001", meta.contract, count=40)
    scorer = get_family("predictor").scorer(meta, load_calibration_arrays(weights, meta),
                                            ScorerConfig())
    assert scorer.smooth == meta.calibration.get("smooth", 1)
    offline = score_clip(net, frames, meta.window, 1, scorer, mx.cpu())
    live = [(s["frame"] - 1, s["scores"]) for s in first_pass if s["frame"] <= 40]
    assert len(live) >= 20
    for i, s in live:
        assert s["score"] == pytest.approx(offline["score"][i], rel=1e-3, abs=1e-3)
        assert s["relative"] == pytest.approx(offline["relative"][i], rel=1e-3, abs=1e-3)
        assert s["motion"] == 0
    models = {m["model"]: m for m in status["models"]}
    assert models["predictor"]["window"] == meta.window and models["predictor"]["stride"] == 1
    assert models["predictor"]["encoder_reuse"]     # each frame (and its change) encoded once
