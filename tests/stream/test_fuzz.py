"""Fuzzing the frame decoder: thousands of hostile messages, only ProtocolError comes out."""

import json
from collections import Counter

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream.wire.protocol import EndOfStream, Frame, ProtocolError, decode_message

KEYS = ["v", "stream", "seq", "ts", "shape", "dtype", "encoding", "clip", "frame", "eos"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**80, 2**80),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)
near_valid = st.fixed_dictionaries({
    "v": st.sampled_from([1, 1, 1, 2, True, "1"]),
    "stream": st.sampled_from(["cam", "a b", "", "x" * 70, 5]),
    "seq": st.one_of(st.integers(-5, 2**70), st.just("3")),
    "ts": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-1, 10**30)),
    "shape": st.lists(st.integers(-3, 10**6), min_size=0, max_size=4),
    "dtype": st.sampled_from(["uint8", "float32", "", None]),
    "encoding": st.sampled_from(["raw", "jpeg", "png", None]),
}, optional={"eos": st.booleans(), "frame": values, "clip": values, "extra": values})
_, JPEG = cv2.imencode(".jpg", np.zeros((8, 8), np.uint8))
payloads = st.one_of(st.binary(max_size=300), st.just(JPEG.tobytes()),
                     st.just(JPEG.tobytes()[:40]), st.just(b"\0" * 64))
headers = st.one_of(near_valid.map(lambda h: json.dumps(h).encode()),
                    st.dictionaries(st.sampled_from(KEYS), values).map(
                        lambda h: json.dumps(h).encode()),
                    st.binary(max_size=200))


@pytest.mark.slow
@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(header=headers, payload=payloads, extra=st.lists(st.binary(max_size=8), max_size=2))
def test_decoder_only_ever_raises_protocol_error(header, payload, extra):
    try:
        msg = decode_message([header, payload, *extra])
    except ProtocolError as err:
        assert err.reason
        return
    assert isinstance(msg, (Frame, EndOfStream))
    if isinstance(msg, Frame):
        assert msg.image.dtype == np.uint8 and msg.image.nbytes <= 8192 * 8192 * 3


def _rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4


def test_decoding_corrupt_jpegs_does_not_grow_memory():
    """Payloads with a valid JPEG header and damaged data reach OpenCV's decoder; native
    memory (resident set, not just Python objects) must stay flat."""
    rng = np.random.default_rng(0)
    _, big = cv2.imencode(".jpg", rng.integers(0, 255, (240, 360), dtype=np.uint8))
    big = big.tobytes()
    header = json.dumps({"v": 1, "stream": "cam", "seq": 0, "ts": 1.0, "shape": [240, 360],
                         "dtype": "uint8", "encoding": "jpeg"}).encode()

    outcomes = Counter()

    def burst():
        for _ in range(1500):
            cut = int(rng.integers(200, len(big)))
            payload = big[:cut] + rng.bytes(64)
            try:
                decode_message([header, payload])
                outcomes["decoded"] += 1
            except ProtocolError as err:
                outcomes[err.reason] += 1
    burst()
    before = _rss_kb()
    burst()
    assert _rss_kb() - before < 20_000
    # every payload went through OpenCV's decoder: it refused it, or made a frame of it
    assert set(outcomes) == {"bad_jpeg", "decoded"} and outcomes["bad_jpeg"] > 1000, outcomes
