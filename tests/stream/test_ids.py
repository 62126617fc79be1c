"""Ids and names are whole-string matches: a trailing newline is not valid anywhere
(``re.match`` with ``$`` used to let ``"cam1\\n"`` through)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stream.dashboard.app import EVENT_ID
from stream.dashboard.auth import AuthError, Credentials
from stream.mqtt.config import MqttConfig
from stream.mqtt.topics import CommandError, MqttTopics
from stream.pipeline import StreamConfig
from stream.wire.protocol import ProtocolError, check_stream_id, decode_message, encode_frame
from stream.wire.topics import TopicError, decode_topic

BAD = ["cam1\n", "cam1\r\n", "\ncam1", "cam1 "]


@pytest.mark.parametrize("stream", BAD)
def test_a_stream_id_with_a_newline_is_refused_everywhere(stream):
    assert check_stream_id("cam1") == "cam1"
    with pytest.raises(ValueError, match="is invalid"):
        check_stream_id(stream)
    with pytest.raises(ValueError, match="is invalid"):
        StreamConfig(id=stream, source="x.avi")
    # on the wire: a frame header that names it is refused by the detector's decoder
    head, payload = encode_frame("cam1", 0, 0.0, np.zeros((4, 4), np.uint8))
    header = json.loads(head)
    decode_message([head, payload])
    with pytest.raises(ProtocolError, match="invalid") as err:
        decode_message([json.dumps({**header, "stream": stream}).encode(), payload])
    assert err.value.reason == "bad_stream"
    with pytest.raises(TopicError, match="invalid"):
        decode_topic([f"eos.{stream}".encode(), json.dumps({"v": 1, "stream": stream})])
    with pytest.raises(CommandError, match="invalid"):
        MqttTopics("vadstream").parse_command(f"vadstream/{stream}/threshold/set")


def test_names_and_prefixes_with_a_trailing_newline_are_refused(tmp_path):
    creds = Credentials(tmp_path / "users.json")
    with pytest.raises(AuthError, match="user name"):
        creds.add_user("alice\n", "correct horse battery")
    with pytest.raises(AuthError, match="token name"):
        creds.new_token("ci\n")
    assert not creds.configured()
    with pytest.raises(ValueError, match="prefix"):
        MqttConfig(prefix="vadstream\n")
    with pytest.raises(ValueError, match="discovery_prefix"):
        MqttConfig(discovery_prefix="homeassistant\n")
    assert EVENT_ID.match("abc123") and not EVENT_ID.match("abc123\n")
