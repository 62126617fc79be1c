import pytest

from stream.detector.windows import window_starts


@pytest.mark.parametrize("n, window, stride", [(180, 10, 5), (180, 10, 10), (23, 10, 3),
                                               (10, 10, 1), (11, 4, 4)])
def test_every_frame_is_scored_once(n, window, stride):
    plan = window_starts(n, window, stride)
    scored = [i for _, lo, hi in plan for i in range(lo, hi)]
    assert scored == list(range(n))
    for start, lo, hi in plan:
        assert start <= lo < hi <= start + window and start + window <= n


def test_short_clip_and_bad_stride():
    assert window_starts(5, 10, 5) == []
    with pytest.raises(ValueError, match="stride must be between 1 and the window"):
        window_starts(50, 10, 11)
