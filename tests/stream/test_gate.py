"""The motion gate: still windows skip the network and decide as the network did."""

import json
import shutil

import cv2
import numpy as np
import pytest

from models.weights import calibration_path, read_meta, weights_paths
from stream.capture.frames import list_frames
from stream.detector.config import DetectorConfig
from stream.detector.gate import Gate, gate_for, window_motion
from tests.conftest import PED2
from train.gate import calibrate, live_scores

CALIBRATED = {"gate": {"bound": 20.0, "score": 5.0}}


def _frames(clip, n):
    return [cv2.imread(str(p)) for p in list_frames(PED2 / "Test" / clip)[:n]]


def test_a_repeated_real_frame_is_still_and_walkers_are_not():
    x = np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) / 255.0 for f in _frames("Test001", 3)])
    assert window_motion(np.stack([x[0]] * 4), 255.0) == 0.0
    moving = window_motion(x, 255.0)
    gate = Gate(bound=20.0, score=5.0, pixel_scale=255.0)
    assert moving > gate.bound
    assert gate.still(np.stack([x[0]] * 4), threshold=10.0)
    assert not gate.still(x, threshold=10.0)
    # a stream whose threshold is at or below the still score is never gated
    assert not gate.still(np.stack([x[0]] * 4), threshold=5.0)


def test_gate_settings():
    assert gate_for("off", CALIBRATED, 6, 1, 255.0) is None
    assert gate_for("auto", {}, 6, 1, 255.0) is None
    assert gate_for("auto", CALIBRATED, 6, 1, 255.0) == Gate(20.0, 5.0, 255.0)
    assert gate_for(7.5, CALIBRATED, 6, 1, 255.0) == Gate(7.5, 5.0, 255.0)
    assert gate_for("auto", CALIBRATED, 1, 1, 255.0) is None      # one frame: no motion
    assert gate_for("auto", CALIBRATED, 6, 3, 255.0) is None      # smoothed
    with pytest.raises(ValueError, match="no calibrated gate"):
        gate_for("on", {}, 6, 1, 255.0)
    with pytest.raises(ValueError, match="smooths over 3 frames"):
        gate_for("on", CALIBRATED, 6, 3, 255.0)
    with pytest.raises(ValueError, match="detector.gate must be one of"):
        DetectorConfig(gate="sometimes")
    with pytest.raises(ValueError, match="detector.gate must be one of"):
        DetectorConfig(gate=-1.0)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_gated_detector_decides_as_ungated_and_skips_a_still_stretch(tiny_trained, tmp_path):
    source = tiny_trained("predictor")
    weights = tmp_path / "predictor"
    params, meta_path = weights_paths(weights)
    shutil.copy(source, params)
    shutil.copy(weights_paths(source)[1], meta_path)
    if calibration_path(source).exists():
        shutil.copy(calibration_path(source), calibration_path(weights))
    gate = calibrate(weights, [PED2 / "Train" / "Train001"], bases=1)   # normal clip only
    meta = json.loads(meta_path.read_text())
    meta["calibration"]["gate"] = gate
    meta_path.write_text(json.dumps(meta))
    threshold = read_meta(weights).calibration["thresholds"][gate["rule"]]
    assert gate["score"] < threshold and gate["bound"] > 0

    clip = _frames("Test001", 36)
    moving, held, after = clip[:24], [clip[23]] * 12, clip[24:]
    frames = moving + held + after             # a real frame held still, then walkers again
    off = live_scores(weights, frames, "off")
    on = live_scores(weights, frames, "auto")
    assert [s["seq"] for s in on] == [s["seq"] for s in off]
    assert [s["anomalous"] for s in on] == [s["anomalous"] for s in off]
    assert not any(s.get("gated") for s in off)
    gated = [s for s in on if s.get("gated")]
    assert gated, "no window of the still stretch was gated"
    # only windows wholly inside the still stretch (their frames all equal) are gated
    window = read_meta(weights).window
    still_end = len(moving) + len(held) - 1
    assert all(len(moving) - 1 + window - 1 <= s["seq"] <= still_end for s in gated)
    assert all(s["scores"]["score"] == pytest.approx(gate["score"]) for s in gated)
    assert not any(s["anomalous"] for s in gated)
    # the stretch's last frame, whose window holds nothing but the held frame, is gated
    assert gated[-1]["seq"] == still_end
    # after it the network runs again (its encoder afresh) and scores as ungated
    later = [(a["scores"]["score"], b["scores"]["score"]) for a, b in zip(off, on, strict=True)
             if a["seq"] > still_end]
    assert later and not any(b.get("gated") for b in on if b["seq"] > still_end)
    ungated, gated_run = np.array(later).T
    np.testing.assert_allclose(gated_run, ungated, rtol=1e-4, atol=1e-3)
