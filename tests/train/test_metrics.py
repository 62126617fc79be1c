import numpy as np
import pytest

from tests.conftest import PED2
from train.metrics import (
    decision_scores,
    frame_labels,
    macro_auc,
    normalise_per_video,
    parse_gt,
    roc_auc_eer,
)


def test_parses_the_real_ped2_ground_truth():
    gt = parse_gt(PED2 / "Test" / "UCSDped2.m")
    assert gt[1] == [(61, 180)] and gt[2] == [(95, 180)] and gt[6] == [(1, 159)]
    assert sorted(gt) == [1, 2, 3, 4, 5, 6]


def test_parses_several_ranges_and_single_frames(tmp_path):
    m = tmp_path / "x.m"
    m.write_text("TestVideoFile = {};\nTestVideoFile{end+1}.gt_frame = [5:9, 20:22];\n"
                 "TestVideoFile{end+1}.gt_frame = [3];\n")
    assert parse_gt(m) == {1: [(5, 9), (20, 22)], 2: [(3, 3)]}
    labels = frame_labels(10, [(5, 9), (20, 22)])
    assert labels.tolist() == [False] * 4 + [True] * 5 + [False]
    m.write_text("nothing here")
    with pytest.raises(ValueError, match="has no `TestVideoFile"):
        parse_gt(m)


def test_auc_and_eer_on_hand_computed_cases():
    labels = np.array([0, 0, 1, 1], bool)
    assert roc_auc_eer(labels, np.array([0.1, 0.2, 0.8, 0.9])) == (1.0, 0.0)
    assert roc_auc_eer(labels, np.array([0.9, 0.8, 0.2, 0.1])) == (0.0, 1.0)
    # one of the 4 positive-negative pairs is inverted: AUC 3/4; at threshold 0.4
    # both FPR and FNR are 1/2, the equal error rate
    auc, eer = roc_auc_eer(labels, np.array([0.1, 0.4, 0.35, 0.9]))
    assert auc == pytest.approx(0.75) and eer == pytest.approx(0.5)
    assert roc_auc_eer(np.ones(3, bool), np.arange(3)) == (None, None)


@pytest.mark.parametrize("labels, scores, eer", [
    ([0, 0, 0, 1, 0], [3, 1, 1, 2, 3], 0.5),                  # the crossing is between points
    ([0] * 10 + [1] * 10, [0] * 10 + [0] * 5 + [1] * 5, 1 / 3),
])
def test_eer_interpolates_between_roc_points(labels, scores, eer):
    assert roc_auc_eer(np.array(labels, bool), np.array(scores, float))[1] == pytest.approx(eer)


def test_threshold_keeps_the_false_alarm_rate_even_with_ties():
    from train.metrics import threshold_at
    zeros = np.r_[np.zeros(995), np.arange(1, 6)]
    t = threshold_at(zeros, 0.01)
    assert (zeros >= t).mean() <= 0.01 and 0 < t <= 1
    rng = np.random.default_rng(0)
    x = rng.normal(size=10000)
    t = threshold_at(x, 0.05)
    assert 0.049 <= (x >= t).mean() <= 0.05


def test_per_video_normalisation_and_decisions():
    np.testing.assert_allclose(normalise_per_video(np.array([2.0, 4.0, 3.0])), [0, 1, 0.5])
    assert normalise_per_video(np.array([1.0, 1.0])).tolist() == [0, 0]
    d = decision_scores(np.array([1, 1, 0, 0], bool), np.array([1, 0, 1, 0], bool))
    assert d == {"precision": 0.5, "recall": 0.5, "f1": 0.5}


def test_macro_auc_averages_clips_with_both_classes_and_skips_the_others():
    labels = [np.array([0, 0, 1, 1], bool), np.array([0, 0, 1, 1], bool), np.ones(3, bool)]
    scores = [np.array([0.1, 0.2, 0.8, 0.9]), np.array([0.1, 0.4, 0.35, 0.9]),
              np.array([5.0, 0.0, 1.0])]
    assert macro_auc(labels, scores) == pytest.approx((1.0 + 0.75) / 2)   # clip 3 skipped
    assert macro_auc(labels[2:], scores[2:]) is None
    assert macro_auc([np.zeros(2, bool)], [np.arange(2.0)]) is None
