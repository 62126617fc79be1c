"""Labelling an event over MQTT (``<prefix>/<stream>/event/label/set``) on a real mosquitto,
a real detector with a real SQLite events store and a real bridge: the bridge sends the
detector a ``label`` control command, the detector's store keeps it, the bridge answers
on ``event/label/state``; a wrong stream, a bad label and a switched-off command change
nothing."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from stream.store import EventStore
from tests.conftest import ANY_PORT, start_detector, stop, vadstream, wait_for
from tests.stream.mqtt.broker import Mosquitto, Recorder, need_mosquitto

pytestmark = [pytest.mark.slow, need_mosquitto]
EVENT = "0123456789abcdef" * 2


def _alert(kind: str) -> dict:
    return {"type": kind, "id": EVENT, "stream": "cam1", "ts": 100.0, "start_seq": 1,
            "start_ts": 100.0, "seq": 3, "score": 5.0, "peak_score": 6.0, "peak_seq": 3,
            "threshold": 1.0, "frames": 3, "boxes": []}


def _bridge(bound: dict, broker: Mosquitto, log, *args: str) -> subprocess.Popen:
    with open(log, "w") as out:
        return vadstream("mqtt", "--connect", bound["publish"], "--control", bound["control"],
                         "--broker", broker.url, "--discovery-prefix", "", *args,
                         stdout=out, stderr=subprocess.STDOUT)


@pytest.mark.timeout(180)
def test_label_an_event_over_mqtt_through_the_detector_store(tmp_path, tiny_weights):
    db = tmp_path / "events.sqlite3"
    with EventStore(db) as store:               # an event a detector stored earlier
        store.append(_alert("start"))
        store.append(_alert("end"))
    folder = tmp_path / "broker"
    folder.mkdir()
    broker = Mosquitto(folder).start()
    detector, bound = start_detector(
        tmp_path / "ready.json", "--model", str(tiny_weights), "--device", "cpu",
        "--precision", "fp32", "--events-db", str(db), "--control", ANY_PORT)
    on_log, off_log = tmp_path / "bridge.log", tmp_path / "bridge-off.log"
    bridge = _bridge(bound, broker, on_log)
    # A second bridge under another prefix, with label switched off (mqtt.commands).
    off = _bridge(bound, broker, off_log, "--prefix", "nolabel", "--commands", "threshold")
    rec = Recorder(broker, ["vadstream/#", "nolabel/#"])
    try:
        rec.wait("vadstream/available", b"online", timeout=60, what="the bridge online")
        rec.wait("nolabel/available", b"online", timeout=60, what="the second bridge online")
        rec.publish("nolabel/cam1/event/label/set", json.dumps({"id": EVENT,
                                                                "label": "anomaly"}))
        mark = rec.mark()
        rec.publish("vadstream/cam2/event/label/set", json.dumps({"id": EVENT,
                                                                 "label": "anomaly"}))
        rec.publish("vadstream/cam1/event/label/set", json.dumps({"id": EVENT,
                                                                 "label": "maybe"}))
        rec.publish("vadstream/cam1/event/label/set", b"normal")
        rec.publish("vadstream/cam1/event/label/set",
                    json.dumps({"id": EVENT, "label": "normal", "who": "ops"}))
        answer = rec.wait("vadstream/cam1/event/label/state", mark=mark, timeout=60,
                          what="the label's state")
        stored = json.loads(answer.payload)
        assert (stored["id"], stored["stream"], stored["label"], stored["who"],
                stored["via"]) == (EVENT, "cam1", "normal", "mqtt:ops", "mqtt")
        refusals = wait_for(
            lambda: (r := re.findall(r"MQTT (\S+) b'[^\n]*' not applied: (.*)",
                                     on_log.read_text())) and len(r) >= 3 and r, 30,
            "three refusals in the bridge's log")
        assert refusals[0][0] == "vadstream/cam2/event/label/set"
        assert f"no event '{EVENT}' of stream 'cam2'" in refusals[0][1]
        assert "'maybe' is unknown" in refusals[1][1]
        assert "is not {\"id\": EVENT_ID" in refusals[2][1]
        assert "event/label/set" not in off_log.read_text()    # switched off: not received
        assert len(rec.since(mark, "vadstream/cam1/event/label/state")) == 1
        with EventStore(db, readonly=True) as store:
            assert [(h["label"], h["who"]) for h in store.label_history(EVENT)] == [
                ("normal", "mqtt:ops")]
        assert detector.poll() is None and bridge.poll() is None and off.poll() is None
    finally:
        rec.close()
        stop(bridge)
        stop(off)
        stop(detector)
        broker.stop()
