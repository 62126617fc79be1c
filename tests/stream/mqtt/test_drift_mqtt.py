"""Drift over MQTT: a real ``vadstream detect`` and ``vadstream mqtt`` on a real mosquitto;
real Ped2 frames, then the same brightened by 60 grey levels, then as they were."""

from __future__ import annotations

import json
import subprocess

import pytest

from stream.wire.protocol import encode_frame
from stream.wire.subscriber import Subscriber
from tests.conftest import (
    ANY_PORT,
    push_socket,
    start_detector,
    stop,
    vadstream,
    wait_for_status,
    wait_subscribed,
)
from tests.stream.mqtt.broker import Mosquitto, Recorder, need_mosquitto
from tests.stream.test_drift import _clips

pytestmark = need_mosquitto
STREAM = "lobby"
DRIFT = f"vadstream/{STREAM}/drift"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_drift_turns_on_and_off_over_mqtt_with_its_home_assistant_sensor(tmp_path,
                                                                         tiny_trained):
    folder = tmp_path / "broker"
    folder.mkdir()
    broker = Mosquitto(folder).start()
    config = tmp_path / "pipeline.yaml"
    config.write_text("scorer:\n  rule: error\n")   # the rule a brightness change moves
    detector, bound = start_detector(
        tmp_path / "ready.json", "--config", str(config), "--model",
        str(tiny_trained("stae")), "--device", "cpu", "--precision", "fp32", "--stride", "2",
        "--status-interval", "0.3", "--events-db", str(tmp_path / "events.sqlite3"),
        "--control", ANY_PORT, "--drift", json.dumps({"window": 24}))
    rec = Recorder(broker, ["vadstream/#", "homeassistant/#"])
    log = open(tmp_path / "bridge.log", "a")
    bridge = vadstream("mqtt", "--connect", bound["publish"], "--control", bound["control"],
                       "--broker", broker.url, stdout=log, stderr=subprocess.STDOUT)
    probe = Subscriber(bound["publish"], ["status"])
    push = push_socket(bound["bind"])
    seq = 0

    def play(frames) -> None:
        nonlocal seq
        for clip, index, image in frames:
            push.send_multipart(encode_frame(STREAM, seq, 1000.0 + seq, image, clip=clip,
                                             frame=index))
            seq += 1

    def scored(n: int) -> dict:
        return wait_for_status(probe, lambda s: s["streams"].get(STREAM, {}).get("scored")
                               == n, 120, f"{n} frames scored")["streams"][STREAM]["drift"]

    try:
        rec.wait("vadstream/available", b"online", what="the bridge online")
        wait_subscribed(probe, ["status"])
        as_is = _clips()
        play(as_is)
        assert scored(36)["state"] == "ok"
        rec.wait(DRIFT, b"OFF", what="drift OFF on the footage as calibrated")
        sensor = json.loads(rec.wait(
            f"homeassistant/binary_sensor/vadstream_{STREAM}/drift/config").payload)
        assert sensor["state_topic"] == DRIFT
        assert sensor["json_attributes_topic"] == f"{DRIFT}/attributes"
        assert sensor["device_class"] == "problem"

        mark = rec.mark()
        play(_clips(60))
        assert scored(72)["state"] == "drift"
        rec.wait(DRIFT, b"ON", mark, 60, "drift ON after +60 grey levels")
        attributes = [json.loads(m.payload) for m in rec.since(mark, f"{DRIFT}/attributes")]
        drifted = next(a for a in attributes if a["state"] == "drift")
        assert drifted["figure"] >= drifted["limit"]
        assert drifted["reference"] == "calibration p90"

        mark = rec.mark()
        play(as_is)
        assert scored(108)["state"] == "ok"
        rec.wait(DRIFT, b"OFF", mark, 60, "drift OFF when the footage returns")
        assert detector.poll() is None and bridge.poll() is None
    finally:
        push.close(linger=0)
        probe.close()
        rec.close()
        stop(bridge)
        stop(detector)
        broker.stop()
