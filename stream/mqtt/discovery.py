"""Home Assistant MQTT discovery: one device per stream with six entities (the sixth,
``drift``, is on while the stream's scores have drifted from its model's calibration).

Each entity's config is published retained on
``<discovery_prefix>/<component>/vadstream_<stream>/<object>/config``; Home Assistant
names the entity after the device (``vadstream <stream>``) and the entity's name, so the
anomaly sensor becomes ``binary_sensor.vadstream_<stream>_anomaly``.
"""

from __future__ import annotations

import math
from pathlib import PurePath

from stream.defaults import THRESHOLD_RANGE
from stream.mqtt.topics import COMMANDS, OFF, ON, MqttTopics

#: ``(component, object)`` of every entity a stream gets.
ENTITIES = (("binary_sensor", "anomaly"), ("sensor", "score"), ("image", "snapshot"),
            ("number", "threshold"), ("switch", "detect"), ("binary_sensor", "drift"))
#: The entities that send a command, by the command (``mqtt.commands``) they send.
COMMAND_ENTITIES = {"threshold": "threshold", "detect": "detect"}
#: What a weights path may end with (``save_weights`` writes ``<path>.params``, ``.json``).
WEIGHTS_SUFFIXES = (".params", ".json", ".onnx")


def threshold_range(threshold: float | None) -> tuple[float, float, float]:
    """``(min, max, step)`` of the threshold entity: from the first step at or above the
    least threshold the detector accepts (``threshold`` / :data:`THRESHOLD_RANGE`) to the
    first 1, 2 or 5 times a power of ten at or above twice ``threshold``, in steps of a
    thousandth of that.

    Scores are on each rule's own scale (pixel counts in the hundreds, errors on 0-255,
    probabilities on 0-1), so the range follows the calibrated threshold.
    """
    if threshold is None or not math.isfinite(threshold) or threshold <= 0:
        return 0.0, 1.0, 0.001
    target = 2 * threshold
    exponent = math.floor(math.log10(target))
    top = next(m * 10.0 ** exponent for m in (1, 2, 5, 10) if m * 10.0 ** exponent >= target)
    step = float(f"{10.0 ** math.floor(math.log10(top / 1000)):.1g}")
    least = math.ceil(threshold / THRESHOLD_RANGE / step - 1e-9) * step
    return float(f"{least:.6g}"), float(f"{top:.6g}"), step


def weights_name(model: str) -> str:
    """The name of a weights file (``/srv/w/ped2.params`` -> ``ped2``): Home Assistant
    shows the device's model to everyone who sees the device, and where the weights lie on
    this host is none of their business."""
    name = PurePath(model).name
    for suffix in WEIGHTS_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[:-len(suffix)]
    return name


def discovery_configs(topics: MqttTopics, discovery_prefix: str, stream: str,
                      threshold: float | None = None, model: str | None = None,
                      commands: tuple[str, ...] = COMMANDS
                      ) -> list[tuple[str, dict | None]]:
    """The retained discovery messages of one stream: ``[(topic, config), ...]``; the
    config is None for an entity whose command is switched off (publishing an empty
    retained message there removes the entity from Home Assistant).

    Args:
        topics: The bridge's topics.
        discovery_prefix: Home Assistant's discovery prefix (``homeassistant``).
        stream: Stream id.
        threshold: Its calibrated threshold (sets the threshold entity's range).
        model: The weights it is scored with (their name is shown as the device's model).
        commands: The MQTT commands the bridge acts on (``mqtt.commands``).
    """
    node = f"vadstream_{stream}"
    device = {"identifiers": [node], "name": f"vadstream {stream}",
              "manufacturer": "vadstream",
              "model": weights_name(model) if model else "video anomaly detector"}
    low, high, step = threshold_range(threshold)
    entities = {
        "anomaly": {"name": "Anomaly", "state_topic": topics.stream(stream, "anomaly"),
                    "payload_on": ON, "payload_off": OFF, "device_class": "problem"},
        "score": {"name": "Score", "state_topic": topics.stream(stream, "score"),
                  "state_class": "measurement", "icon": "mdi:chart-bell-curve"},
        "snapshot": {"name": "Snapshot", "image_topic": topics.stream(stream, "snapshot"),
                     "content_type": "image/jpeg"},
        "threshold": {"name": "Threshold",
                      "command_topic": topics.stream(stream, "threshold/set"),
                      "state_topic": topics.stream(stream, "threshold/state"),
                      "min": low, "max": high, "step": step, "mode": "box",
                      "entity_category": "config"},
        "detect": {"name": "Detection", "command_topic": topics.stream(stream, "detect/set"),
                   "state_topic": topics.stream(stream, "detect/state"),
                   "payload_on": ON, "payload_off": OFF, "state_on": ON, "state_off": OFF,
                   "entity_category": "config"},
        "drift": {"name": "Drift", "state_topic": topics.stream(stream, "drift"),
                  "json_attributes_topic": topics.stream(stream, "drift/attributes"),
                  "payload_on": ON, "payload_off": OFF, "device_class": "problem",
                  "entity_category": "diagnostic"},
    }
    out: list[tuple[str, dict | None]] = []
    for component, obj in ENTITIES:
        topic = f"{discovery_prefix}/{component}/{node}/{obj}/config"
        if obj in COMMAND_ENTITIES and COMMAND_ENTITIES[obj] not in commands:
            out.append((topic, None))
            continue
        config = {**entities[obj], "unique_id": f"{node}_{obj}",
                  "availability_topic": topics.available, "device": device,
                  "origin": {"name": "vadstream"}}
        out.append((topic, config))
    return out
