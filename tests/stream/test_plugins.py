"""Two cameras on two models in one detector, live through real processes: a walkway
stream on the STAE and a conveyor stream of casting parts on a per-frame plug-in family
(tests/plugins/frame_ae.py, window 1)."""

import subprocess

import pytest
import yaml

from stream.wire.subscriber import Subscriber
from tests.conftest import DATA, PED2, reserve_port, stop, vadstream, wait_for
from tests.plugins.frame_ae import make_frame_weights

CASTING = DATA / "casting" / "train" / "ok_front"


@pytest.mark.timeout(180)
def test_two_streams_on_two_models_in_one_detector(tiny_weights, tmp_path):
    parts = tmp_path / "parts"       # 40 real casting images, as a conveyor camera sees them
    parts.mkdir()
    for image in sorted(CASTING.glob("*.jpeg"))[:40]:
        (parts / image.name).symlink_to(image)
    frame_weights = make_frame_weights(tmp_path / "frame_ae", threshold=1e9)
    bind, publish = f"tcp://127.0.0.1:{reserve_port()}", f"tcp://127.0.0.1:{reserve_port()}"
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump({
        "detector": {"bind": bind, "publish": publish, "model": str(tiny_weights),
                     "device": "cpu", "precision": "fp32", "stride": 2, "max_batch": 4,
                     "status_interval": 0.5, "events_db": str(tmp_path / "events.sqlite3"),
                     "plugins": ["tests.plugins.frame_ae"]},
        "scorer": {"rule": "auto"},
        "streams": [
            {"id": "walkway", "source": str(PED2 / "Test" / "Test001"), "fps": 15, "loop": True},
            {"id": "conveyor", "source": str(parts), "fps": 15, "loop": True,
             "model": str(frame_weights)}]}))
    run = vadstream("run", "--config", str(config), stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE, text=True)
    sub = Subscriber(publish, ["score.", "status"])
    scores = {"walkway": [], "conveyor": []}
    status = {}
    try:
        def enough():
            assert run.poll() is None, run.stderr.read()
            m = sub.recv()
            if m is not None and m.topic.startswith("score."):
                scores[m.topic[len("score."):]].append(m.payload)
            elif m is not None and m.topic == "status":
                status.update(m.payload)
            return all(len(v) >= 25 for v in scores.values())
        wait_for(enough, 120, "both streams scored")
    finally:
        sub.close()
        stop(run)
    walk, conveyor = scores["walkway"], scores["conveyor"]
    # Each stream was scored by its own model: the STAE's calibrated rule (area) and the
    # plug-in's (error, with no motion: a one-frame window has no change).
    assert {s["rule"] for s in walk} == {"area"} and {s["threshold"] for s in walk} == {30}
    assert {s["rule"] for s in conveyor} == {"error"}
    assert {s["threshold"] for s in conveyor} == {1e9}
    assert all(s["scores"]["motion"] == 0 and s["scores"]["error"] > 0 for s in conveyor)
    assert not any(s["anomalous"] for s in conveyor)
    for stream in scores.values():         # no frame scored twice
        assert len({(s["seq"], s["ts"]) for s in stream}) == len(stream)
    models = {m["model"]: m for m in status["models"]}
    assert set(models) == {"stae", "test_frame_ae"}
    assert models["test_frame_ae"]["window"] == 1 and models["stae"]["window"] == 4
    assert status["streams"]["conveyor"]["model"] == str(frame_weights)
