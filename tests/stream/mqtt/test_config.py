"""The bridge's config, topics, payloads, Home Assistant discovery and TLS set-up."""

import json
import ssl

import pytest
import yaml

from stream.config import ConfigError
from stream.defaults import THRESHOLD_RANGE
from stream.detector.allowed import check_threshold_range
from stream.mqtt.client import make_client, tls_context
from stream.mqtt.config import Broker, MqttConfig, parse_broker
from stream.mqtt.discovery import ENTITIES, discovery_configs, threshold_range
from stream.mqtt.topics import (
    CommandError,
    MqttTopics,
    event_payload,
    parse_model,
    parse_switch,
    parse_threshold,
)
from stream.pipeline import load_pipeline
from tests.conftest import ROOT
from tests.stream.mqtt.broker import OPENSSL, make_certificates


def test_broker_urls():
    assert parse_broker("mqtt://127.0.0.1:1884") == Broker("127.0.0.1", 1884, False)
    assert parse_broker("mqtt://broker.lan") == Broker("broker.lan", 1883, False)
    assert parse_broker("mqtts://broker.lan") == Broker("broker.lan", 8883, True)
    assert parse_broker("mqtts://[::1]:8884/") == Broker("::1", 8884, True)
    with pytest.raises(ValueError, match="mqtt://HOST"):
        parse_broker("tcp://127.0.0.1:1883")
    with pytest.raises(ValueError, match="password_file"):
        parse_broker("mqtt://me:secret@broker.lan")
    with pytest.raises(ValueError, match="port in 1..65535"):
        parse_broker("mqtt://broker.lan:99999")


def test_config_checks_its_values():
    with pytest.raises(ValueError, match="prefix"):
        MqttConfig(prefix="vad/#")
    with pytest.raises(ValueError, match="needs a username"):
        MqttConfig(broker="mqtt://h", password_file="pw")
    with pytest.raises(ValueError, match="tls_cert and tls_key"):
        MqttConfig(broker="mqtts://h", tls_cert="c.pem")
    assert not MqttConfig(broker="mqtt://h").active          # off unless enabled
    assert not MqttConfig(enabled=True).active               # and a broker given
    assert MqttConfig(enabled=True, broker="mqtt://h").active


def test_pipeline_section_is_off_by_default_and_strict(tmp_path):
    shipped = load_pipeline(ROOT / "configs" / "pipeline.yaml")
    assert shipped.mqtt.broker and not shipped.mqtt.active
    assert load_pipeline(None).mqtt == MqttConfig()
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"mqtt": {"enabled": True, "broker": "mqtt://b:1",
                                             "prefix": "home/vad"}}))
    assert load_pipeline(path).mqtt.prefix == "home/vad"
    path.write_text(yaml.safe_dump({"mqtt": {"brokr": "mqtt://b"}}))
    with pytest.raises(ConfigError, match="unknown key 'brokr'.*valid keys: enabled, broker"):
        load_pipeline(path)


def test_supervisor_starts_the_bridge_on_the_detector_endpoints(tmp_path):
    from stream.apps.supervisor import mqtt_command

    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({
        "detector": {"publish": "tcp://*:7001"},
        "mqtt": {"enabled": True, "broker": "mqtt://b:1", "username": "u",
                 "password_file": "pw"}}))
    argv = mqtt_command(load_pipeline(path))
    assert argv[argv.index("mqtt") + 1:argv.index("mqtt") + 3] == ["--broker", "mqtt://b:1"]
    assert argv[argv.index("--connect") + 1] == "tcp://127.0.0.1:7001"
    assert argv[argv.index("--password-file") + 1] == "pw"
    assert "--enabled" not in argv and "--prefix" not in argv   # defaults are left out


def test_command_topics_and_payloads():
    topics = MqttTopics("vadstream")
    assert topics.parse_command("vadstream/ped2/threshold/set") == ("ped2", "threshold")
    assert topics.parse_command("vadstream/cam-1/detect/set") == ("cam-1", "detect")
    assert topics.parse_command("vadstream/ped2/model/set") == ("ped2", "model")
    assert parse_model(b" models/weights/cam1 ") == "models/weights/cam1"
    assert parse_model(b"default") == "" and parse_model(b"") == ""
    with pytest.raises(CommandError, match="not a weights path"):
        parse_model(b"a\nb")
    for bad in ("vadstream/ped2/threshold/state", "other/ped2/detect/set",
                "vadstream/ped2/zoom/set", "vadstream/a/b/detect/set"):
        with pytest.raises(CommandError, match="is not vadstream/<stream>"):
            topics.parse_command(bad)
    with pytest.raises(CommandError, match="stream id 'bad.id' is invalid"):
        topics.parse_command("vadstream/bad.id/threshold/set")
    assert parse_threshold(b"412.5") == 412.5
    assert parse_threshold(b" calibrated ") is None and parse_threshold(b"") is None
    for bad in (b"abc", b"nan", b"-1", b"\xff"):
        with pytest.raises(CommandError):
            parse_threshold(bad)
    assert parse_switch(b"on") is True and parse_switch(b"OFF") is False
    with pytest.raises(CommandError, match="not ON or OFF"):
        parse_switch(b"maybe")
    event = json.loads(event_payload("new", {"id": "a"}, {"id": "a", "score": 2}))
    assert event == {"type": "new", "before": {"id": "a"}, "after": {"id": "a", "score": 2}}


def test_threshold_range_follows_the_score_scale():
    assert threshold_range(400.0) == (4.0, 1000.0, 1.0)      # pixel counts
    assert threshold_range(30.0) == (0.3, 100.0, 0.1)
    assert threshold_range(0.5) == (0.005, 1.0, 0.001)        # probabilities
    assert threshold_range(None) == (0.0, 1.0, 0.001)
    for t in (0.0123, 7.0, 1020.0, 3.3e4, 541.7):
        low, high, step = threshold_range(t)
        # the slider offers only what the detector accepts (1/100..100x calibrated)
        check_threshold_range(low, t)
        check_threshold_range(high, t)
        assert t / THRESHOLD_RANGE <= low < t / THRESHOLD_RANGE + step + 1e-12
        assert 2 * t <= high <= 10 * t and 0 < step <= high / 1000


def test_discovery_drops_the_entities_of_switched_off_commands():
    topics = MqttTopics("vadstream")
    configs = dict(discovery_configs(topics, "homeassistant", "ped2", 400.0, "ped2",
                                     commands=("model",)))
    assert configs["homeassistant/number/vadstream_ped2/threshold/config"] is None
    assert configs["homeassistant/switch/vadstream_ped2/detect/config"] is None
    assert configs["homeassistant/binary_sensor/vadstream_ped2/anomaly/config"]["name"] \
        == "Anomaly"


def test_discovery_configs_one_device_five_entities():
    topics = MqttTopics("vadstream")
    configs = dict(discovery_configs(topics, "homeassistant", "ped2", 400.0,
                                     "/home/op/models/weights/ped2.params"))
    assert list(configs) == [f"homeassistant/{c}/vadstream_ped2/{o}/config"
                             for c, o in ENTITIES]
    by_object = {topic.split("/")[3]: c for topic, c in configs.items()}
    for obj, config in by_object.items():
        assert config["unique_id"] == f"vadstream_ped2_{obj}"
        assert config["device"]["identifiers"] == ["vadstream_ped2"]
        assert config["device"]["model"] == "ped2"   # the weights' name, not their path
        assert config["availability_topic"] == "vadstream/available"
    assert by_object["anomaly"]["state_topic"] == "vadstream/ped2/anomaly"
    assert by_object["score"]["state_topic"] == "vadstream/ped2/score"
    assert by_object["snapshot"]["image_topic"] == "vadstream/ped2/snapshot"
    assert by_object["snapshot"]["content_type"] == "image/jpeg"
    number = by_object["threshold"]
    assert number["command_topic"] == "vadstream/ped2/threshold/set"
    assert number["state_topic"] == "vadstream/ped2/threshold/state"
    assert (number["min"], number["max"], number["step"]) == (4.0, 1000.0, 1.0)
    assert by_object["detect"]["command_topic"] == "vadstream/ped2/detect/set"
    assert by_object["detect"]["state_topic"] == "vadstream/ped2/detect/state"


@pytest.mark.skipif(not __import__("pathlib").Path(OPENSSL).is_file(),
                    reason="openssl is not installed (apt-get install openssl)")
def test_tls_client_trusts_the_given_ca(tmp_path):
    ca, _, _ = make_certificates(tmp_path)
    config = MqttConfig(broker="mqtts://127.0.0.1:8883", tls_ca=str(ca))
    context = tls_context(config)
    assert [dict(x[0] for x in c["subject"])["commonName"] for c in context.get_ca_certs()] \
        == ["vadstream test CA"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    make_client(config, "vadstream/available", "offline")   # accepts the context
    with pytest.raises(FileNotFoundError, match="tls_ca .*missing.pem not found"):
        tls_context(MqttConfig(broker="mqtts://h", tls_ca=str(tmp_path / "missing.pem")))
    with pytest.raises(ValueError, match="not TLS; use mqtts://"):
        make_client(MqttConfig(broker="mqtt://h", tls_ca=str(ca)), "t", "offline")
