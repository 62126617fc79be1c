"""Fused weights of a motion and an appearance model: one network holding both, whose
score is the larger of the two scaled component scores, calibrated on normal training
clips only, run by the detector's engine, exported to ONNX, and live as offline."""

import mxnet as mx
import numpy as np
import onnxruntime as ort
import pytest

from models import get_family, load_calibration_arrays, load_weights
from models.export import export_onnx, read_export
from models.scoring import ScorerConfig
from stream.detector.engine import Engine
from tests.conftest import PED2, run_models_live
from train.data import load_clip
from train.fusion import build_fused
from train.offline import score_clip


@pytest.fixture(scope="module")
def fused(tiny_trained, tmp_path_factory):
    motion, appearance = tiny_trained("predictor"), tiny_trained("object_ae")
    out = tmp_path_factory.mktemp("fused") / "fused"
    build_fused(motion, appearance, out, ["Train003"], PED2, rule="max")
    return motion, appearance, out


@pytest.mark.timeout(300)
def test_a_fused_score_is_the_larger_scaled_component_score(fused):
    motion, appearance, weights = fused
    net, meta = load_weights(weights)
    cal = meta.calibration
    assert meta.model == "fused" and meta.window == 5 and cal["fusion"]["rule"] == "max"
    frames = load_clip(PED2 / "Train" / "Train002", meta.contract, count=30)
    scorer = get_family("fused").scorer(meta, load_calibration_arrays(weights, meta),
                                        ScorerConfig())
    got = score_clip(net, frames, meta.window, 1, scorer, mx.cpu())
    parts = []
    for w in (motion, appearance):
        n, m = load_weights(w)
        s = get_family(m.model).scorer(m, load_calibration_arrays(w, m),
                                       ScorerConfig(smooth=1, threshold=1.0))
        parts.append(score_clip(n, frames, m.window, 1, s, mx.cpu())["score"])
    scales = cal["fusion"]["scales"]
    want = np.maximum(parts[0] / scales["motion"], parts[1] / scales["appearance"])
    ok = np.isfinite(got["score"])
    assert ok.sum() == 30 - 4              # the fused window is the longer one: 5 frames
    np.testing.assert_allclose(got["score"][ok], want[ok], rtol=1e-4)
    np.testing.assert_array_equal(got["anomalous"][ok], want[ok] >= cal["thresholds"]["fused"])
    engine = Engine(weights, device="cpu", precision="fp32", max_batch=2)
    x = np.stack([frames[i:i + 5] for i in (0, 10)])
    np.testing.assert_allclose(engine.reconstruct(x), net(mx.nd.array(x)).asnumpy(),
                               atol=1e-5)


@pytest.mark.timeout(180)
def test_fused_weights_export_with_onnx_parity(fused, tmp_path):
    _, _, weights = fused
    _, json_path = export_onnx(weights, tmp_path / "f")
    model, meta, arrays, _ = read_export(json_path)
    net, _ = load_weights(weights)
    frames = load_clip(PED2 / "Train" / "Train001", meta.contract, count=8)
    x = np.stack([frames[i:i + 5] for i in range(3)])
    got = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(
        None, {"data": x})[0]
    np.testing.assert_allclose(got, net(mx.nd.array(x)).asnumpy(), atol=2e-4, rtol=2e-4)
    assert set(arrays) == {"motion.baseline", "motion.spread"}


def test_fusion_refuses_test_clips(fused, tmp_path):
    motion, appearance, _ = fused
    with pytest.raises(ValueError, match="never Test clips"):
        build_fused(motion, appearance, tmp_path / "x", ["Test001"], PED2)


@pytest.mark.timeout(300)
def test_a_fused_stream_scores_live_as_offline(fused, tmp_path):
    _, _, weights = fused
    clip = PED2 / "Train" / "Train002"
    scores, status = run_models_live(tmp_path, weights, [{"id": "f", "source": str(clip)}])
    net, meta = load_weights(weights)
    got = [s for s in scores["f"] if s["seq"] < 120]
    assert {s["rule"] for s in got} == {"fused"}
    frames = load_clip(clip, meta.contract, count=40)
    scorer = get_family("fused").scorer(meta, load_calibration_arrays(weights, meta),
                                        ScorerConfig())
    offline = score_clip(net, frames, meta.window, 1, scorer, mx.cpu())
    live = [(s["frame"] - 1, s["scores"]) for s in got if s["frame"] <= 40]
    assert len(live) >= 20
    for i, s in live:
        assert s["score"] == pytest.approx(offline["score"][i], rel=1e-3, abs=1e-3)
    assert {m["model"] for m in status["models"]} == {"fused"}


@pytest.mark.timeout(300)
def test_evaluate_reports_a_fused_model_with_its_own_rule(fused, tmp_path):
    from tests.train.test_evaluate import _bike_clip_dataset
    from train.evaluate import evaluate

    result, clips = evaluate(fused[2], _bike_clip_dataset(tmp_path))
    (clip,) = clips
    assert np.isfinite(clip.scores).all() and len(clip.scores) == 180
    assert result["rule"] == "fused" and set(result["rules"]) == {"fused"}
    assert result["rules"]["fused"]["frame_auc_online"] == result["frame_auc_online"]
    assert 0.0 <= result["recall_online"] <= 1.0 and "intervals_with_event" in result["events"]
