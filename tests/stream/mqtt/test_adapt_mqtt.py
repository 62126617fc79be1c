"""An adaptation's stages on MQTT: ``<prefix>/<stream>/adapt``, retained JSON, on a real
mosquitto (what ``vadstream adapt`` publishes beside ``progress.json``)."""

from __future__ import annotations

import json

from stream.adapt import AdaptRecord
from stream.mqtt.config import MqttConfig
from tests.stream.mqtt.broker import Recorder, need_mosquitto
from train.adapt_live import Notices

pytestmark = need_mosquitto


def test_each_stage_is_published_retained_and_written_to_progress(broker, tmp_path):
    record = AdaptRecord(tmp_path / "adapted", "walkway")
    lines: list[str] = []
    notices = Notices(record, MqttConfig(enabled=True, broker=broker.url, prefix="site"),
                      echo=lines.append)
    notices("fine-tuning", epoch=1, epochs=3, done=0.0)
    notices("fine-tuning", epoch=1, epochs=3, done=0.5)     # the same stage: no new line
    notices("live", weights="models/weights/adapted/walkway/ped2_predictor-a1")
    assert lines == ["adapt walkway: fine-tuning, epoch 1, epochs 3, done 0.0",
                     "adapt walkway: live, weights "
                     "models/weights/adapted/walkway/ped2_predictor-a1"]
    assert record.read_progress()["stage"] == "live"
    # A client that subscribes afterwards gets the last stage: it is retained.
    late = Recorder(broker, ["site/walkway/adapt"])
    try:
        message = late.wait("site/walkway/adapt")
        body = json.loads(message.payload)
        assert message.retain and body["stage"] == "live" and body["stream"] == "walkway"
        assert body["weights"].endswith("ped2_predictor-a1")
    finally:
        late.close()
