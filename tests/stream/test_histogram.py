import pytest

from stream.detector.histogram import Histogram


def test_counts_are_cumulative_per_bound():
    h = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 3.0):
        h.observe(value)
    assert h.as_dict() == {"bounds": [0.1, 1.0], "counts": [2, 3], "sum": 3.65, "count": 4}


def test_bounds_must_increase():
    with pytest.raises(ValueError, match="increasing"):
        Histogram((1.0, 0.5))
