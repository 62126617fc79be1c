"""The appearance proxy kinds on a real normal Ped2 clip: each changes only the frames it
labels, moves its object at walking pace, and the crowd kind lands in the clip's busiest
stretch; validation refuses test clips."""

import numpy as np
import pytest

from models import InputContract
from tests.conftest import PED2
from train.appearance import main
from train.data import load_clip
from train.proxies import APPEARANCE, WALKING_SPEED, busiest_stretch, texture_object

CONTRACT = InputContract(size=128)


@pytest.fixture(scope="module")
def frames():
    return load_clip(PED2 / "Train" / "Train015", CONTRACT)


@pytest.mark.parametrize("kind", sorted(APPEARANCE))
def test_a_kind_changes_only_the_frames_it_labels(frames, kind):
    altered, labels = APPEARANCE[kind](frames)
    assert altered.shape == frames.shape and labels.shape == (len(frames),)
    assert labels.sum() >= 20
    changed = np.abs(altered - frames).max(axis=(1, 2)) > 1e-6
    np.testing.assert_array_equal(changed, labels)
    # one connected run of frames
    idx = np.flatnonzero(labels)
    assert (np.diff(idx) == 1).all()


@pytest.mark.parametrize("kind", sorted(APPEARANCE))
def test_the_object_moves_at_walking_pace(frames, kind):
    altered, labels = APPEARANCE[kind](frames)
    idx = np.flatnonzero(labels)
    cols = []
    for t in (idx[0], idx[-1]):
        where = np.flatnonzero((np.abs(altered[t] - frames[t]) > 1e-6).any(axis=0))
        cols.append(where.mean())
    speed = abs(cols[1] - cols[0]) / (idx[-1] - idx[0])
    assert speed == pytest.approx(WALKING_SPEED * 128 / 227, rel=0.15)


def test_the_crowd_kind_pastes_into_the_busiest_third(frames):
    _, labels = APPEARANCE["crowd"](frames)
    start = busiest_stretch(frames, len(frames) // 3)
    idx = np.flatnonzero(labels)
    assert idx[0] == start and idx[-1] < start + len(frames) // 3


def test_the_texture_object_is_not_flat_and_is_cyclist_sized(frames):
    patch = texture_object(frames)
    assert patch.shape == (round(36 * 128 / 227), round(28 * 128 / 227))
    assert patch.std() > 0.02


def test_validation_refuses_test_clips(tmp_path):
    with pytest.raises(SystemExit, match="never Test clips"):
        main(["--weights", "models/weights/ped2_predictor", "--clips", "Test001",
              "--json", str(tmp_path / "v.json")])
