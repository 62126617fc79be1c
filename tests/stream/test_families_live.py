"""The two seed-notebook families live through real processes: one `vadstream run`, one
detector, a walkway stream on tiny trained stacked-frame AE weights (the detector's model)
and another on tiny trained frame CAE weights (the stream's own model, window 1)."""

import subprocess

import pytest
import yaml

from models import read_meta
from stream.wire.subscriber import Subscriber
from tests.conftest import PED2, reserve_port, stop, vadstream, wait_for


@pytest.mark.timeout(300)
def test_frame_cae_and_stacked_ae_streams_in_one_detector(tiny_trained, tmp_path):
    stacked, cae = tiny_trained("stacked_ae"), tiny_trained("frame_cae")
    bind, publish = f"tcp://127.0.0.1:{reserve_port()}", f"tcp://127.0.0.1:{reserve_port()}"
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump({
        "detector": {"bind": bind, "publish": publish, "model": str(stacked),
                     "device": "cpu", "precision": "fp32", "stride": 2, "max_batch": 4,
                     "status_interval": 0.5, "events_db": str(tmp_path / "events.sqlite3")},
        "scorer": {"rule": "auto"},
        "streams": [
            {"id": "stacked", "source": str(PED2 / "Test" / "Test001"), "fps": 15, "loop": True},
            {"id": "cae", "source": str(PED2 / "Test" / "Test002"), "fps": 15, "loop": True,
             "model": str(cae)}]}))
    run = vadstream("run", "--config", str(config), stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE, text=True)
    sub = Subscriber(publish, ["score.", "status"])
    scores = {"stacked": [], "cae": []}
    status = {}
    try:
        def enough():
            assert run.poll() is None, run.stderr.read()
            m = sub.recv()
            if m is not None and m.topic.startswith("score."):
                scores[m.topic[len("score."):]].append(m.payload)
            elif m is not None and m.topic == "status":
                status.update(m.payload)
            return all(len(v) >= 25 for v in scores.values()) and "models" in status
        wait_for(enough, 180, "both streams scored")
    finally:
        sub.close()
        stop(run)
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
