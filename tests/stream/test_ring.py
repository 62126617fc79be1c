import numpy as np
import pytest

from stream.detector.ring import RingBuffer


def _ring(capacity=5):
    return RingBuffer(capacity, {"x": ((2, 3), np.float32), "seq": ((), np.int64)})


def _push(ring, value):
    slot = ring.push()
    ring.fields["x"][slot] = value
    ring.fields["seq"][slot] = value


def test_reads_across_wrap_around():
    ring = _ring()
    for v in range(13):
        _push(ring, v)
    # holds 8..12, stored in slots 3,4,0,1,2: a read from 9 wraps the end of storage
    np.testing.assert_array_equal(ring.read("seq", 9, 4), [9, 10, 11, 12])
    out = np.empty((5, 2, 3), np.float32)
    ring.read("x", 8, 5, out=out)
    np.testing.assert_array_equal(out[:, 0, 0], [8, 9, 10, 11, 12])


def test_overwritten_and_future_frames_are_refused():
    ring = _ring()
    for v in range(7):
        _push(ring, v)
    assert ring.oldest == 2
    with pytest.raises(IndexError, match="frame 1 is not in the ring"):
        ring.read("seq", 1, 2)
    with pytest.raises(IndexError, match="frame 7 is not in the ring"):
        ring.read("seq", 5, 3)


def test_storage_is_allocated_once():
    ring = _ring()
    before = ring.fields["x"]
    for v in range(20):
        _push(ring, v)
    ring.clear()
    _push(ring, 42)
    assert ring.fields["x"] is before
    assert ring.count == 1 and ring.read("seq", 0, 1)[0] == 42


def test_capacity_must_be_positive():
    with pytest.raises(ValueError, match="capacity must be at least 1"):
        RingBuffer(0, {})
