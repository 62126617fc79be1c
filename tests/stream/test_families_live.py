"""The two seed-notebook families live through real processes: one `vadstream run`, one
detector, a walkway stream on tiny trained stacked-frame AE weights (the detector's model)
and another on tiny trained frame CAE weights (the stream's own model, window 1)."""


import pytest

from models import read_meta
from tests.conftest import PED2, run_models_live


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
