"""The bridge as ``vadstream run`` (its ``mqtt:`` section) and ``vadstream demo --mqtt``
start it, on a real mosquitto and a replayed Ped2 clip."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from stream.capture.frames import list_frames
from tests.conftest import PED2, make_weights, reserve_port, stop, vadstream, wait_for
from tests.stream.mqtt.broker import Recorder, need_mosquitto

pytestmark = need_mosquitto


def _clip(tmp_path, frames: int = 20):
    folder = tmp_path / "Test001"
    folder.mkdir()
    for path in list_frames(PED2 / "Test" / "Test001")[:frames]:
        (folder / path.name).symlink_to(path)
    return folder


def _event(rec: Recorder, kind: str) -> dict:
    return wait_for(lambda: next((e for e in (json.loads(m.payload) for m in
                                              rec.since(0, "vadstream/events"))
                                  if e["type"] == kind), None), 120, f"events {kind}")


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_run_supervises_the_bridge_of_its_mqtt_section(tmp_path, tiny_weights, broker):
    port = lambda: f"tcp://127.0.0.1:{reserve_port()}"   # noqa: E731
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump({
        "detector": {"bind": port(), "publish": port(), "control": port(),
                     "model": str(tiny_weights), "device": "cpu", "precision": "fp32",
                     "stride": 2, "status_interval": 0.5,
                     "model_dirs": [str(tmp_path)],   # where "other" weights are made
                     "events_db": str(tmp_path / "events.sqlite3")},
        "mqtt": {"enabled": True, "broker": broker.url, "prefix": "vadstream"},
        "streams": [{"id": "cam1", "source": str(_clip(tmp_path)), "fps": 15, "loop": True}]}))
    rec = Recorder(broker, ["vadstream/#", "homeassistant/#"])
    run = vadstream("run", "--config", str(config), stdout=subprocess.DEVNULL,
                    stderr=open(tmp_path / "run.log", "w"))
    try:
        rec.wait("vadstream/available", b"online", timeout=60)
        rec.wait("homeassistant/binary_sensor/vadstream_cam1/anomaly/config", timeout=60)
        assert _event(rec, "new")["after"]["stream"] == "cam1"
        rec.wait("vadstream/cam1/anomaly", b"ON")
        # Commands reach the detector of the run, on its detector.control.
        mark = rec.mark()
        rec.publish("vadstream/cam1/threshold/set", "3000")   # 100 x calibrated: the most
        rec.wait("vadstream/cam1/threshold/state", b"3000", mark)
        rec.publish("vadstream/cam1/detect/set", "OFF")
        rec.wait("vadstream/cam1/anomaly", b"OFF", mark, 60)
        # A model assigned over MQTT: the stream moves onto it, and its threshold goes back
        # to the new weights' calibrated one (30: the override was on the old model's).
        other = make_weights(tmp_path / "other", seed=3)
        mark = rec.mark()
        rec.publish("vadstream/cam1/model/set", str(other))
        rec.wait("vadstream/cam1/model/state", str(other).encode(), mark, 90)
        rec.wait("vadstream/cam1/threshold/state", b"30", mark, 60)
        mark = rec.mark()
        run.send_signal(2)   # Ctrl-C: the supervisor stops its children, the bridge says so
        assert run.wait(60) == 0
        rec.wait("vadstream/available", b"offline", mark)
    finally:
        rec.close()
        stop(run)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_demo_with_mqtt(tmp_path, tiny_weights, broker):
    rec = Recorder(broker, ["vadstream/#"])
    demo = vadstream("demo", "--source", str(_clip(tmp_path)), "--fps", "10", "--model",
                     str(tiny_weights), "--device", "cpu", "--precision", "fp32",
                     "--no-dashboard", "--video", str(tmp_path / "overlays.mp4"),
                     "--mqtt", broker.url, stdout=subprocess.PIPE, text=True)
    try:
        out, _ = demo.communicate(timeout=200)
        assert demo.returncode == 0, out
        new, end = _event(rec, "new"), _event(rec, "end")
        assert new["after"]["id"] == end["after"]["id"] and new["after"]["stream"] == "demo"
        rec.wait("vadstream/demo/anomaly", b"OFF")
        rec.wait("vadstream/demo/snapshot")
        rec.wait("vadstream/available", b"offline")
    finally:
        rec.close()
        stop(demo)
