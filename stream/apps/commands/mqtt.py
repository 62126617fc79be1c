"""``vadstream mqtt``: the MQTT bridge (its flags: ``MqttConfig``)."""

from __future__ import annotations

import argparse

from stream.apps.commands.common import stop_on_signals
from stream.apps.flags import add_dataclass_flags, overrides_from_args
from stream.mqtt.config import MqttConfig


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``mqtt``."""
    q = sub.add_parser("mqtt", help="publish alerts, scores and snapshots on an MQTT broker, "
                       "with Home Assistant discovery and threshold/detection commands")
    add_dataclass_flags(q, MqttConfig, skip={"enabled"})
    q.set_defaults(func=cmd_mqtt)


def cmd_mqtt(args: argparse.Namespace) -> int:
    """Run the bridge until stopped."""
    # Imports nothing of MXNet: the bridge runs beside the detector.
    from stream.mqtt.bridge import Bridge

    bridge = Bridge(MqttConfig(enabled=True, **overrides_from_args(args, MqttConfig)))
    bridge.run(stop_on_signals())
    return 0
