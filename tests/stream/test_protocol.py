import json

import cv2
import numpy as np
import pytest

from stream.wire.protocol import (
    EndOfStream,
    Frame,
    ProtocolError,
    decode_message,
    encode_eos,
    encode_frame,
)
from tests.conftest import PED2


def _image():
    return cv2.imread(str(PED2 / "Test" / "Test001" / "001.jpg"), cv2.IMREAD_COLOR)


def _parts(header: dict, payload: bytes = b"") -> list:
    return [json.dumps(header).encode(), payload]


def _good_header(**over):
    h = {"v": 1, "stream": "cam", "seq": 0, "ts": 1.5, "shape": [2, 3], "dtype": "uint8",
         "encoding": "raw"}
    h.update(over)
    return h


def test_raw_round_trip_is_exact():
    image = _image()
    parts = encode_frame("cam-1", 7, 123.25, image, clip="Test001", frame=1)
    header = json.loads(parts[0])
    assert header == {"v": 1, "stream": "cam-1", "seq": 7, "ts": 123.25, "shape": [240, 360, 3],
                      "dtype": "uint8", "encoding": "raw", "clip": "Test001", "frame": 1}
    msg = decode_message([parts[0], bytes(parts[1])])
    assert isinstance(msg, Frame)
    np.testing.assert_array_equal(msg.image, image)
    assert (msg.stream, msg.seq, msg.ts, msg.clip, msg.frame) == ("cam-1", 7, 123.25, "Test001", 1)


def test_reconnects_travel_in_the_header():
    parts = encode_frame("cam", 3, 1.0, np.zeros((2, 3), np.uint8), reconnects=4)
    assert json.loads(parts[0])["reconnects"] == 4
    assert decode_message([parts[0], bytes(parts[1])]).reconnects == 4
    plain = encode_frame("cam", 3, 1.0, np.zeros((2, 3), np.uint8))
    assert decode_message([plain[0], bytes(plain[1])]).reconnects is None


def test_jpeg_round_trip_is_close():
    image = _image()
    parts = encode_frame("cam", 0, 1.0, image, encoding="jpeg")
    msg = decode_message(parts)
    assert msg.image.shape == image.shape
    assert np.abs(msg.image.astype(int) - image).mean() < 3


def test_end_of_stream():
    parts = encode_eos("cam")
    assert json.loads(parts[0]) == {"v": 1, "stream": "cam", "eos": True} and parts[1] == b""
    assert decode_message(encode_eos("cam", 12)) == EndOfStream("cam", 12)
    assert decode_message(parts) == EndOfStream("cam")


@pytest.mark.parametrize("parts, reason", [
    ([b"only one"], "bad_parts"),
    ([b"\xff\xfe", b""], "bad_json"),
    ([b"[1, 2]", b""], "bad_json"),
    (_parts(_good_header(v=2)), "bad_version"),
    (_parts({k: v for k, v in _good_header().items() if k != "seq"}), "missing_key"),
    (_parts(_good_header(seq="3")), "bad_type"),
    (_parts(_good_header(seq=True)), "bad_type"),
    (_parts(_good_header(seq=-1), b"\0" * 6), "bad_value"),
    (_parts(_good_header(stream="a b")), "bad_stream"),
    (_parts(_good_header(shape=[2]), b"\0" * 2), "bad_shape"),
    (_parts(_good_header(shape=[10**9, 10**9])), "bad_shape"),
    (_parts(_good_header(shape=[-2, 3])), "bad_shape"),
    (_parts(_good_header(shape=[2, 3, 4]), b"\0" * 24), "bad_shape"),
    (_parts(_good_header(dtype="float32"), b"\0" * 24), "bad_dtype"),
    (_parts(_good_header(), b"\0" * 5), "bad_length"),
    (_parts(_good_header(encoding="png"), b"\0" * 6), "bad_encoding"),
    (_parts(_good_header(encoding="jpeg"), b"\xff\xd8 not a jpeg"), "bad_jpeg"),
])
def test_bad_messages_are_refused_with_a_reason(parts, reason):
    with pytest.raises(ProtocolError) as info:
        decode_message(parts)
    assert info.value.reason == reason


def test_unknown_encoding_cannot_be_sent():
    with pytest.raises(ValueError, match="encoding 'gif'"):
        encode_frame("cam", 0, 0.0, np.zeros((2, 2), np.uint8), encoding="gif")


@pytest.mark.parametrize("over, reason", [
    ({"seq": 2**70}, "bad_value"),
    ({"ts": 10**400}, "bad_value"),
    ({"ts": -1}, "bad_value"),
    ({"frame": 2**70}, "bad_type"),
    ({"reconnects": -1}, "bad_type"),
    ({"reconnects": True}, "bad_type"),
    ({"v": True}, "bad_version"),
    ({"shape": [8192, 8192, 3]}, "bad_shape"),
])
def test_out_of_range_values_are_refused(over, reason):
    with pytest.raises(ProtocolError) as info:
        decode_message(_parts(_good_header(**over), b"\0" * 6))
    assert info.value.reason == reason


def test_jpeg_larger_than_its_header_is_refused_before_decoding():
    ok, jpeg = cv2.imencode(".jpg", np.zeros((240, 360), np.uint8))
    with pytest.raises(ProtocolError, match=r"JPEG frame size \(240, 360\) differs") as info:
        decode_message(_parts(_good_header(encoding="jpeg", shape=[8, 8]), jpeg.tobytes()))
    assert info.value.reason == "bad_shape"


def test_png_payload_is_not_taken_for_jpeg():
    ok, png = cv2.imencode(".png", np.zeros((2, 3), np.uint8))
    with pytest.raises(ProtocolError) as info:
        decode_message(_parts(_good_header(encoding="jpeg"), png.tobytes()))
    assert info.value.reason == "bad_jpeg"
