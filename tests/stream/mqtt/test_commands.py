"""MQTT commands that must not take effect, on a real mosquitto, a real detector and a
real bridge: a model outside the allowed folders (``/etc/passwd``) is refused with the
text a missing file gets, a threshold beyond the calibration is refused, a command
switched off (``mqtt.commands``) changes nothing, and commands reach a detector that
requires CURVE through the bridge's keys."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from stream.wire.control import ControlClient
from stream.wire.security import CurveClient, make_keys
from tests.conftest import ANY_PORT, start_detector, stop, vadstream, wait_for
from tests.stream.mqtt.broker import Recorder, need_mosquitto

pytestmark = [pytest.mark.slow, need_mosquitto]


def _refusals(log) -> list[str]:
    """The bridge's "not applied" lines: ``(topic, payload, why)``."""
    return re.findall(r"MQTT (\S+) (b'[^']*') not applied: (.*)", log.read_text())


@pytest.mark.timeout(180)
def test_refused_and_switched_off_commands_change_nothing(tmp_path, tiny_weights, broker):
    detector, bound = start_detector(
        tmp_path / "ready.json", "--model", str(tiny_weights), "--device", "cpu",
        "--precision", "fp32", "--events-db", "", "--control", ANY_PORT)
    log = tmp_path / "bridge.log"
    with open(log, "w") as out:
        bridge = vadstream("mqtt", "--connect", bound["publish"], "--control",
                           bound["control"], "--broker", broker.url,
                           "--commands", "threshold", "model",      # detect: off
                           stdout=out, stderr=subprocess.STDOUT)
    rec = Recorder(broker, ["vadstream/#"])
    control = ControlClient(bound["control"], timeout_s=30)
    try:
        rec.wait("vadstream/available", b"online", timeout=60, what="the bridge online")
        rec.publish("vadstream/cam1/model/set", "/etc/passwd")
        rec.publish("vadstream/cam1/model/set", "/etc/no-such-weights-anywhere")
        rec.publish("vadstream/cam1/threshold/set", "1e308")
        rec.publish("vadstream/cam1/detect/set", "OFF")              # switched off
        rec.publish("vadstream/cam1/threshold/set", "60")            # allowed: applied
        wait_for(lambda: control.state()["streams"].get("cam1", {}).get("threshold") == 60,
                 60, "the allowed threshold applied")
        refusals = wait_for(lambda: len(_refusals(log)) >= 3 and _refusals(log), 30,
                            "three refusals in the bridge's log")
        passwd, missing, huge = refusals[:3]
        assert passwd[0] == missing[0] == "vadstream/cam1/model/set"
        assert "allowed model folder" in passwd[2]
        # Whether /etc/passwd exists is not told: the same text as for a missing file.
        assert (passwd[2].replace("/etc/passwd", "NAME")
                == missing[2].replace("/etc/no-such-weights-anywhere", "NAME"))
        assert huge[0] == "vadstream/cam1/threshold/set" and "outside" in huge[2]
        state = control.state()["streams"]["cam1"]
        assert state["detect"] is True                    # detect/set OFF changed nothing
        assert state["model"] == str(tiny_weights)
        assert "detect/set" not in log.read_text()        # not even received
        assert bridge.poll() is None and detector.poll() is None
    finally:
        control.close()
        rec.close()
        stop(bridge)
        stop(detector)


@pytest.mark.timeout(180)
def test_commands_reach_a_curve_detector_through_the_bridge_keys(tmp_path, tiny_weights,
                                                                 broker):
    keys, allowed = tmp_path / "keys", tmp_path / "allowed"
    make_keys(keys, ["server", "bridge", "admin"])
    allowed.mkdir()
    for name in ("bridge", "admin"):
        shutil.copy(keys / f"{name}.key", allowed)
    detector, bound = start_detector(
        tmp_path / "ready.json", "--model", str(tiny_weights), "--device", "cpu",
        "--precision", "fp32", "--events-db", "", "--control", ANY_PORT,
        "--curve-secret-key", str(keys / "server.key_secret"),
        "--curve-allowed", str(allowed))
    with open(tmp_path / "bridge.log", "w") as out:
        bridge = vadstream("mqtt", "--connect", bound["publish"], "--control",
                           bound["control"], "--broker", broker.url,
                           "--curve-key", str(keys / "bridge.key_secret"),
                           "--curve-server", str(keys / "server.key"),
                           stdout=out, stderr=subprocess.STDOUT)
    rec = Recorder(broker, ["vadstream/#"])
    admin = ControlClient(bound["control"], timeout_s=30,
                          curve=CurveClient(str(keys / "admin.key_secret"),
                                            str(keys / "server.key")))
    try:
        rec.wait("vadstream/available", b"online", timeout=60, what="the bridge online")
        rec.publish("vadstream/cam1/threshold/set", "45")
        wait_for(lambda: admin.state()["streams"].get("cam1", {}).get("threshold") == 45,
                 60, "the threshold applied over the bridge's CURVE keys")
        assert bridge.poll() is None
    finally:
        admin.close()
        rec.close()
        stop(bridge)
        stop(detector)
