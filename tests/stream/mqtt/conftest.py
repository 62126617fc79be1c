"""The MQTT tests' broker: a real mosquitto on a free loopback port, one per test."""

import pytest

from tests.stream.mqtt.broker import Mosquitto


@pytest.fixture
def broker(tmp_path):
    folder = tmp_path / "broker"
    folder.mkdir()
    b = Mosquitto(folder).start()
    yield b
    b.stop()
