"""``vadstream mqtt`` against a real mosquitto on loopback, on a real detector scoring a
replayed UCSD Ped2 clip: events, states, snapshot, Home Assistant discovery, commands to
the detector, a broker restart, broker passwords and TLS."""

from __future__ import annotations

import json
import signal
import subprocess

import cv2
import numpy as np
import pytest

from stream.capture.frames import list_frames
from stream.mqtt.discovery import ENTITIES
from stream.wire.subscriber import Subscriber
from tests.conftest import (
    ANY_PORT,
    PED2,
    start_detector,
    stop,
    vadstream,
    wait_for,
    wait_for_status,
    wait_subscribed,
)
from tests.stream.mqtt.broker import (
    OPENSSL,
    Mosquitto,
    Recorder,
    make_certificates,
    need_mosquitto,
    wait_exit,
)

pytestmark = need_mosquitto
STREAM = "ped2"
#: A detector endpoint with no detector: the bridge needs none to come online.
NOWHERE = "tcp://127.0.0.1:1"
CONFIGS = [f"homeassistant/{c}/vadstream_{STREAM}/{o}/config" for c, o in ENTITIES]


def _topic(name: str) -> str:
    return f"vadstream/{STREAM}/{name}"


@pytest.fixture
def clip(tmp_path):
    """The first 20 frames of Ped2's Test001 (real frames; a random model finds every
    frame anomalous, so a looped replay holds one event open until told otherwise)."""
    folder = tmp_path / "Test001"
    folder.mkdir()
    for path in list_frames(PED2 / "Test" / "Test001")[:20]:
        (folder / path.name).symlink_to(path)
    return folder


def _events(rec: Recorder, mark: int = 0) -> list[dict]:
    return [json.loads(m.payload) for m in rec.since(mark, "vadstream/events")]


def _bridge(tmp_path, *args: str) -> subprocess.Popen:
    log = open(tmp_path / "bridge.log", "a")
    return vadstream("mqtt", *args, stdout=log, stderr=subprocess.STDOUT)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_ped2_event_discovery_commands_and_a_broker_restart(tmp_path, tiny_weights, broker,
                                                            clip):
    detector, bound = start_detector(
        tmp_path / "ready.json", "--model", str(tiny_weights), "--device", "cpu",
        "--precision", "fp32", "--stride", "2", "--status-interval", "0.5",
        "--events-db", str(tmp_path / "events.sqlite3"), "--control", ANY_PORT)
    rec = Recorder(broker, ["vadstream/#", "homeassistant/#"])
    probe = Subscriber(bound["publish"], ["status", f"score.{STREAM}"])
    procs = [detector]
    try:
        bridge = _bridge(tmp_path, "--connect", bound["publish"], "--control", bound["control"],
                         "--broker", broker.url, "--score-interval", "0.5")
        procs.append(bridge)
        rec.wait("vadstream/available", b"online", what="the bridge online")
        wait_subscribed(probe, ["alert.", "score."])   # the bridge reads the detector
        procs.append(vadstream("capture", "--source", str(clip), "--stream-id", STREAM,
                               "--connect", bound["bind"], "--fps", "15", "--loop"))

        # An event opens: events new, anomaly ON, and the stream's discovery (retained).
        new = wait_for(lambda: next((e for e in _events(rec) if e["type"] == "new"), None),
                       60, "events new")
        assert new["after"]["stream"] == STREAM and new["after"]["type"] == "start"
        rec.wait(_topic("anomaly"), b"ON")
        configs = {t: json.loads(rec.wait(t).payload) for t in CONFIGS}
        assert all(c["device"]["identifiers"] == [f"vadstream_{STREAM}"]
                   for c in configs.values())
        # the device's model is the weights' name, not where they lie on this host
        assert tiny_weights.name == "tiny.params"
        assert all(c["device"]["model"] == "tiny" for c in configs.values())
        assert not any(str(tiny_weights.parent) in json.dumps(c) for c in configs.values())
        number = configs[f"homeassistant/number/vadstream_{STREAM}/threshold/config"]
        assert (number["min"], number["max"]) == (0.3, 100.0)   # 1/100 to ~3x the calibrated 30
        rec.wait(_topic("status"), b"online")
        float(rec.wait(_topic("score")).payload)
        assert float(rec.wait(_topic("threshold/state")).payload) == 30.0   # the weights'
        rec.wait(_topic("detect/state"), b"ON")

        # The broker dies and comes back on the same port, empty: the bridge reconnects,
        # says online again and re-announces the stream; the detector never noticed.
        broker.stop()
        mark = rec.mark()
        broker.start()
        rec.wait("vadstream/available", b"online", mark, 60, "online after the restart")
        for topic in CONFIGS:
            rec.wait(topic, mark=mark, what=f"{topic} re-sent after the restart")
        assert detector.poll() is None and bridge.poll() is None

        # threshold/set: the detector's threshold changes (status, later decisions). The
        # most the calibration allows (100 x 30) is still below this random model's scores.
        mark = rec.mark()
        rec.publish(_topic("threshold/set"), "3000")
        assert float(rec.wait(_topic("threshold/state"), mark=mark).payload) == 3000
        wait_for_status(probe, lambda s: s["streams"].get(STREAM, {}).get("threshold") == 3000,
                        30, "the new threshold in status")
        def decided_at_3000():
            m = probe.recv()
            return m if m is not None and m.topic.startswith("score.") and \
                m.payload["threshold"] == 3000 else None
        wait_for(decided_at_3000, 30, "a score decided against the new threshold")
        # Reports the detector sent before the change never undo it on MQTT.
        assert {float(m.payload) for m in rec.since(mark, _topic("threshold/state"))} == {3000}
        # A threshold beyond the calibration is refused: the state stays.
        mark = rec.mark()
        rec.publish(_topic("threshold/set"), "1e9")
        assert float(rec.wait(_topic("threshold/state"), mark=mark).payload) == 3000

        # detect/set OFF reaches the detector: its open event ends, after the restart,
        # with the same id; bad payloads are answered with the state.
        mark = rec.mark()
        rec.publish(_topic("detect/set"), "OFF")
        rec.wait(_topic("detect/state"), b"OFF", mark)
        wait_for_status(probe, lambda s: s["streams"].get(STREAM, {}).get("detect") is False,
                        30, "detection off in status")
        end = wait_for(lambda: next((e for e in _events(rec, mark) if e["type"] == "end"),
                                    None), 60, "events end after detect/set OFF")
        assert end["after"]["id"] == end["before"]["id"] == new["after"]["id"]
        assert {e["after"]["id"] for e in _events(rec)} == {new["after"]["id"]}
        rec.wait(_topic("anomaly"), b"OFF", mark)
        jpeg = rec.wait(_topic("snapshot"), mark=mark).payload
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape == (240, 360, 3)
        mark = rec.mark()
        rec.publish(_topic("threshold/set"), "abc")
        rec.publish(_topic("detect/set"), "maybe")
        rec.publish("vadstream/bad.id/threshold/set", "5")
        assert float(rec.wait(_topic("threshold/state"), mark=mark).payload) == 3000
        rec.wait(_topic("detect/state"), b"OFF", mark)
        mark = rec.mark()
        rec.publish(_topic("threshold/set"), "calibrated")
        assert float(rec.wait(_topic("threshold/state"), mark=mark).payload) == 30.0
        assert bridge.poll() is None

        # Home Assistant restarts: discovery is sent again.
        mark = rec.mark()
        rec.publish("homeassistant/status", "online")
        for topic in CONFIGS:
            rec.wait(topic, mark=mark, what=f"{topic} re-sent for Home Assistant")

        # Someone who connects now gets the retained state.
        fresh = Recorder(broker, ["vadstream/#", "homeassistant/#"])
        try:
            for topic in CONFIGS:
                assert fresh.wait(topic).retain
            assert fresh.wait("vadstream/available", b"online").retain
            assert fresh.wait(_topic("anomaly"), b"OFF").retain
            last = rec.since(0, _topic("snapshot"))[-1].payload   # the event's peak
            assert fresh.wait(_topic("snapshot")).payload == last
        finally:
            fresh.close()

        # A clean stop says offline (retained).
        mark = rec.mark()
        bridge.send_signal(signal.SIGTERM)
        assert wait_exit(bridge) == 0
        rec.wait("vadstream/available", b"offline", mark)
        late = Recorder(broker, ["vadstream/available"])
        try:
            assert late.wait("vadstream/available").payload == b"offline"
            assert late.wait("vadstream/available").retain
        finally:
            late.close()
        assert detector.poll() is None
    finally:
        probe.close()
        rec.close()
        for proc in reversed(procs):
            stop(proc)
    log = (tmp_path / "bridge.log").read_text()
    assert "not applied: threshold 'abc' is not a number" in log
    assert "detect 'MAYBE' is not ON or OFF" in log
    assert "stream id 'bad.id' is invalid" in log


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_broker_user_and_password(tmp_path):
    folder = tmp_path / "broker"
    folder.mkdir()
    b = Mosquitto(folder, users={"vad": "s3cret"}).start()
    (tmp_path / "good").write_text("s3cret\n")
    (tmp_path / "bad").write_text("wrong\n")
    rec = Recorder(b, ["vadstream/#", "other/#"], username="vad", password="s3cret")
    procs = []
    try:
        procs.append(_bridge(tmp_path, "--broker", b.url, "--connect", NOWHERE,
                             "--username", "vad", "--password-file", str(tmp_path / "good")))
        rec.wait("vadstream/available", b"online")
        procs.append(_bridge(tmp_path, "--broker", b.url, "--prefix", "other", "--username",
                             "vad", "--password-file", str(tmp_path / "bad")))
        wait_for(lambda: "refused the connection" in (tmp_path / "bridge.log").read_text(), 30,
                 "the bridge with the wrong password refused")
        assert procs[1].poll() is None and not rec.since(0, "other/available")
    finally:
        rec.close()
        for proc in procs:
            stop(proc)
        b.stop()


@pytest.mark.timeout(60)
@pytest.mark.skipif(not __import__("pathlib").Path(OPENSSL).is_file(),
                    reason="openssl is not installed (apt-get install openssl)")
@pytest.mark.slow
def test_tls_broker(tmp_path):
    folder = tmp_path / "broker"
    folder.mkdir()
    ca, cert, key = make_certificates(folder)
    b = Mosquitto(folder, tls=(ca, cert, key)).start()
    rec = Recorder(b, ["vadstream/#"], tls_ca=ca)
    bridge = _bridge(tmp_path, "--broker", b.url, "--connect", NOWHERE,
                     "--tls-ca", str(ca))
    try:
        rec.wait("vadstream/available", b"online")
    finally:
        rec.close()
        stop(bridge)
        b.stop()
