"""The object-centric appearance family live through real processes: `vadstream run`
scores a walkway stream on tiny trained object_ae weights, each frame once, with the
scores the offline scorer gives the same frames (the region finding runs on the network's
motion map in the scorer, the same code on both paths)."""

import mxnet as mx
import pytest

from models import get_family, load_calibration_arrays, load_weights
from models.scoring import ScorerConfig
from tests.conftest import PED2, run_models_live
from train.data import load_clip
from train.offline import score_clip

CLIP = PED2 / "Train" / "Train002"


@pytest.mark.timeout(300)
def test_object_ae_stream_scores_live_as_offline(tiny_trained, tmp_path):
    weights = tiny_trained("object_ae")
    scores, status = run_models_live(tmp_path, weights, [{"id": "obj", "source": str(CLIP)}])
    net, meta = load_weights(weights)
    cal = meta.calibration
    got = scores["obj"]
    assert {s["rule"] for s in got} == {"object"}
    assert {s["threshold"] for s in got} == {cal["thresholds"]["object"]}
    unscored = meta.window - 1           # frames before the first window's last
    first_pass = [s for s in got if s["seq"] < 120]     # before the clip loops
    assert [s["frame"] for s in first_pass] == list(range(unscored + 1, unscored + 1 +
                                                          len(first_pass)))
    frames = load_clip(CLIP, meta.contract, count=40)
    scorer = get_family("object_ae").scorer(meta, load_calibration_arrays(weights, meta),
                                            ScorerConfig())
    offline = score_clip(net, frames, meta.window, 1, scorer, mx.cpu())
    live = [(s["frame"] - 1, s["scores"]) for s in first_pass if s["frame"] <= 40]
    assert len(live) >= 20
    for i, s in live:
        assert s["score"] == pytest.approx(offline["score"][i], rel=1e-3, abs=1e-3)
        assert s["error"] == offline["error"][i]           # the objects found
    assert any(s["error"] > 0 for _, s in live)            # walkers were found
    models = {m["model"]: m for m in status["models"]}
    assert models["object_ae"]["window"] == meta.window and models["object_ae"]["stride"] == 1
