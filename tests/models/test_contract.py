import cv2
import numpy as np
import pytest

from models import InputContract
from tests.conftest import PED2


def _frame():
    return cv2.imread(str(PED2 / "Test" / "Test001" / "001.jpg"), cv2.IMREAD_COLOR)


def test_color_and_gray_sources_give_the_same_input():
    c = InputContract()
    color = _frame()
    gray = cv2.cvtColor(color, cv2.COLOR_BGR2GRAY)
    a, b = c.preprocess(color), c.preprocess(gray)
    assert a.shape == (227, 227) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=1 / 255)
    assert 0.0 <= a.min() and a.max() <= 1.0


def test_standardisation_and_pixel_scale():
    c = InputContract(mean=0.4, std=0.2)
    gray = cv2.cvtColor(_frame(), cv2.COLOR_BGR2GRAY)
    plain = InputContract().preprocess(gray)
    np.testing.assert_allclose(c.preprocess(gray), (plain - 0.4) / 0.2, atol=1e-5)
    assert c.pixel_scale == pytest.approx(51.0)


def test_writes_into_a_given_array():
    out = np.zeros((227, 227), np.float32)
    res = InputContract().preprocess(_frame(), out=out)
    assert res is out and out.any()


@pytest.mark.parametrize("frame, match", [
    (np.zeros((10, 10), np.float32), "dtype must be uint8"),
    (np.zeros((10, 10, 4), np.uint8), r"must be \(H, W\) or \(H, W, 3\)"),
])
def test_bad_frames_are_refused(frame, match):
    with pytest.raises(ValueError, match=match):
        InputContract().preprocess(frame)


def test_bad_contract_is_refused():
    with pytest.raises(ValueError, match="std must be positive"):
        InputContract(std=0)
    with pytest.raises(ValueError, match="interpolation 'cubic'"):
        InputContract(interpolation="cubic")
