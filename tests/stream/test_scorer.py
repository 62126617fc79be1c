import cv2
import numpy as np
import pytest
from scipy.signal import convolve2d

from models.scoring import Scorer, ScorerConfig, spread_map, top_share_mean, window_sum
from tests.conftest import PED2


def test_window_sum_equals_scipy_on_random_maps():
    rng = np.random.default_rng(1)
    for shape in [(227, 227), (5, 7), (4, 4), (1, 9)]:
        d = rng.uniform(0, 255, shape).astype(np.float32)
        expected = convolve2d(d, np.ones((4, 4)), mode="same")
        np.testing.assert_allclose(window_sum(d), expected, rtol=1e-5, atol=1e-2)


def test_window_sum_equals_scipy_on_real_frame_differences():
    a = cv2.imread(str(PED2 / "Test" / "Test002" / "100.jpg"), cv2.IMREAD_GRAYSCALE)
    b = cv2.imread(str(PED2 / "Test" / "Test002" / "103.jpg"), cv2.IMREAD_GRAYSCALE)
    d = np.abs(a.astype(np.float32) - b)
    batch = np.stack([d, d[::-1]])
    out = window_sum(batch)
    for i in range(2):
        np.testing.assert_allclose(out[i], convolve2d(batch[i], np.ones((4, 4)), mode="same"),
                                   rtol=1e-5, atol=1e-2)


def test_scores_on_the_0_255_scale():
    frames = np.zeros((2, 20, 20), np.float32)
    recon = frames.copy()
    recon[1, 5:9, 5:9] = 0.5          # 16 pixels off by 127.5: one window sums to 2040
    s = Scorer(rule="area", threshold=1).score(recon, frames)
    assert s.peak[0] == 0 and s.peak[1] == pytest.approx(2040)
    assert s.error[1] == pytest.approx(16 * 127.5 / 400)
    assert not s.anomalous[0] and s.anomalous[1]
    # H > 1020 where more than 8 of the 16 window pixels are off
    expected = convolve2d((recon[1] - frames[1]) * 255, np.ones((4, 4)), mode="same") > 1020
    np.testing.assert_array_equal(s.mask[1], expected)
    assert s.area[1] == expected.sum()


def test_rules_and_thresholds():
    frames = np.zeros((2, 20, 20), np.float32)
    recon = frames.copy()
    recon[:, 2:6, 2:6] = 0.5
    area = Scorer(rule="area", threshold=50).score(recon, frames, 1)
    assert not area.anomalous[0] and area.score[0] == area.area[0]
    peak = Scorer(rule="peak", threshold=2000).score(recon, frames, 1)
    assert peak.anomalous[0] and peak.score[0] == pytest.approx(2040)
    # A frame the peak flags shows where: its map above the rule's threshold (the
    # calibrated one, not the pixel threshold, which a small model's errors never reach).
    low = Scorer(rule="peak", threshold=1000, pixel_threshold=4000).score(recon, frames, 1)
    assert low.anomalous[0] and low.mask[0].any() and not low.area[0]
    np.testing.assert_array_equal(low.mask, low.map > 1000)
    assert not Scorer(rule="peak", threshold=2041).score(recon, frames, 1).anomalous[0]
    error = Scorer(rule="error", threshold=5).score(recon, frames, 1)
    assert error.score[0] == pytest.approx(16 * 127.5 / 400) and error.anomalous[0]
    # The same error in both frames: nothing changed, so the motion rule sees nothing.
    motion = Scorer(rule="motion", threshold=1).score(recon, frames, 1)
    assert motion.score[0] == 0 and not motion.anomalous[0] and not motion.mask.any()
    with pytest.raises(ValueError, match="rule 'max' is not one of"):
        Scorer(rule="max")


def test_motion_rule_is_the_top_of_the_map_of_the_errors_change():
    rng = np.random.default_rng(3)
    frames = rng.uniform(0, 1, (4, 30, 30)).astype(np.float32)
    recon = frames + rng.normal(0, 0.05, frames.shape).astype(np.float32)
    s = Scorer(rule="motion", threshold=300).score(recon, frames, 2)
    residual = (recon - frames) * 255
    for j, t in enumerate((2, 3)):
        change = convolve2d(np.abs(residual[t] - residual[t - 1]), np.ones((4, 4)), mode="same")
        np.testing.assert_allclose(s.map[j], change, rtol=1e-4, atol=1e-2)
        top = np.sort(change.ravel())[-9:]           # 1% of 900 pixels
        assert s.motion[j] == pytest.approx(top.mean(), rel=1e-4)
        np.testing.assert_array_equal(s.mask[j], change > 300)
    # A window's first frame has no frame before it, and the next one is its future.
    whole = Scorer(rule="motion", threshold=300).score(recon, frames)
    assert not whole.map[0].any() and whole.motion[0] == 0 and not whole.anomalous[0]
    np.testing.assert_allclose(whole.map[2:], s.map)
    with pytest.raises(ValueError, match="at least 2 frames"):
        Scorer(rule="motion", threshold=300).score(recon[:1], frames[:1])
    # A per-frame model's window of one frame: its error rules score it, motion is 0.
    one = Scorer(rule="peak", threshold=1).score(recon[:1], frames[:1])
    assert one.motion[0] == 0
    assert one.peak[0] == pytest.approx(s_peak_of_first(recon, frames), rel=1e-5)


def test_motion_rule_flags_a_fast_mover_but_not_a_steady_error():
    """A square the reconstruction leaves behind: steady texture error does not count,
    the error moving with an object does."""
    frames = np.zeros((3, 40, 40), np.float32)
    steady = frames.copy()
    steady[:, 5:13, 5:13] = 0.5
    moving = frames.copy()
    for t in range(3):
        moving[t, 20:28, 4 + 8 * t:12 + 8 * t] = 0.5
    scorer = Scorer(rule="motion", threshold=1000)
    assert not scorer.score(steady, frames, 1).anomalous.any()
    s = scorer.score(moving, frames, 1)
    assert s.anomalous.all() and s.mask[:, 20:28].any() and not s.mask[:, :15].any()


def test_config_takes_rule_and_threshold_from_calibration():
    cal = {"rule": "peak", "thresholds": {"peak": 1500.0, "area": 40.0}}
    auto = ScorerConfig().build(cal, 255.0)
    assert (auto.rule, auto.threshold) == ("peak", 1500.0)
    area = ScorerConfig(rule="area").build(cal, 255.0)
    assert (area.rule, area.threshold) == ("area", 40.0)
    fixed = ScorerConfig(rule="error", threshold=9.0).build({}, 255.0)
    assert (fixed.rule, fixed.threshold) == ("error", 9.0)
    with pytest.raises(ValueError, match="no threshold for scorer rule 'error'"):
        ScorerConfig(rule="error").build(cal, 255.0)
    with pytest.raises(ValueError, match="rule 'median' is not one of"):
        ScorerConfig(rule="median")
    with_base = {**cal, "arrays": ["baseline"], "pixel_threshold": 1020.0}
    with pytest.raises(ValueError, match="assume the baseline"):
        ScorerConfig(baseline=False).build(with_base, 255.0)
    with pytest.raises(ValueError, match="assume pixel_threshold 1020.0"):
        ScorerConfig(pixel_threshold=900.0).build(with_base, 255.0)
    assert ScorerConfig(baseline=False, threshold=3.0).build(with_base, 255.0).threshold == 3.0
    # The motion rule's threshold holds whatever the baseline and the pixel threshold.
    motion = {**with_base, "rule": "motion", "thresholds": {"motion": 500.0}}
    built = ScorerConfig(baseline=False, pixel_threshold=900.0).build(motion, 255.0)
    assert (built.rule, built.threshold, built.map_threshold) == ("motion", 500.0, 500.0)


def test_pixel_scale_converts_standardised_units():
    frames = np.zeros((2, 8, 8), np.float32)
    recon = np.full((2, 8, 8), 0.5, np.float32)
    s = Scorer(pixel_scale=255 * 0.2).score(recon, frames)
    assert s.error[0] == pytest.approx(0.5 * 51)


def s_peak_of_first(recon, frames):
    return float(window_sum(np.abs(recon[0] - frames[0]) * 255.0).max())


def test_spread_is_floored_at_its_median():
    std = np.array([[0.0, 1.0], [4.0, 9.0]], np.float32)
    np.testing.assert_array_equal(spread_map(std), [[2.5, 2.5], [4.0, 9.0]])


def test_relative_rule_measures_each_pixel_against_normal_footage_there():
    """The same error counts for more where normal footage leaves little: a far, small
    mover against a near, busy walkway."""
    rng = np.random.default_rng(0)
    frames = rng.uniform(size=(2, 32, 32)).astype(np.float32)
    recon = frames.copy()
    recon[0, 4:8, 4:8] += 0.2           # frame 0: an error in the calm top rows
    recon[1, 24:28, 4:8] += 0.2         # frame 1: the same error in the busy bottom rows
    baseline = np.zeros((32, 32), np.float32)
    baseline[16:] = 100.0               # normal footage leaves errors in the bottom half
    std = np.full((32, 32), 5.0, np.float32)
    std[16:] = 50.0
    spread = spread_map(std)
    scorer = Scorer(rule="relative", threshold=10.0, baseline=baseline, spread=spread)
    s = scorer.score(recon, frames)
    sums = window_sum(np.abs(recon - frames) * 255)
    want = top_share_mean((sums - baseline) / spread)
    np.testing.assert_allclose(s.relative, want, rtol=1e-5)
    np.testing.assert_allclose(s.score, want, rtol=1e-5)
    assert s.relative[0] > 10 > s.relative[1]
    assert list(s.anomalous) == [True, False]
    np.testing.assert_allclose(s.map, (sums - baseline) / spread, rtol=1e-5)
    np.testing.assert_array_equal(s.mask, s.map > 10)     # the map thresholded at 10
    assert s.mask[0, :16].any() and not s.mask[:, 16:].all()
    # Without a spread map the value does not exist, and the rule cannot be used.
    plain = Scorer(rule="error", threshold=1.0, baseline=baseline).score(recon, frames)
    assert np.isnan(plain.relative).all()
    with pytest.raises(ValueError, match="relative' needs the calibrated baseline and spread"):
        Scorer(rule="relative", baseline=baseline)
    built = ScorerConfig().build({"rule": "relative", "thresholds": {"relative": 3.0}}, 255.0,
                                 baseline, spread)
    assert built.rule == "relative" and built.threshold == 3.0 and built.spread is not None


def test_top_rule_is_the_top_of_the_sums_less_the_baseline():
    rng = np.random.default_rng(1)
    frames = rng.uniform(size=(3, 40, 40)).astype(np.float32)
    recon = frames + rng.normal(scale=0.02, size=frames.shape).astype(np.float32)
    baseline = np.full((40, 40), 20.0, np.float32)
    s = Scorer(rule="top", threshold=50.0, baseline=baseline).score(recon, frames)
    excess = window_sum(np.abs(recon - frames) * 255) - baseline
    np.testing.assert_allclose(s.top, top_share_mean(excess), rtol=1e-5)
    np.testing.assert_allclose(s.score, s.top, rtol=1e-6)
    assert (s.top <= s.peak).all()
    np.testing.assert_array_equal(s.mask, s.map > 50.0)


def test_smoothing_is_a_causal_moving_mean_that_skips_unscored_frames():
    from models.scoring import Smoother, smooth_values
    s = Smoother(3)
    assert [s.push(v) for v in (3, 6, 9, 0)] == [3, 4.5, 6, 5]
    s.reset()
    assert s.push(1) == 1
    out = smooth_values(np.array([np.nan, np.nan, 3, 6, 9, 0]), 3)
    np.testing.assert_array_equal(out[2:], [3, 4.5, 6, 5])
    assert np.isnan(out[:2]).all()
    np.testing.assert_array_equal(smooth_values(np.array([1.0, 5.0]), 1), [1, 5])
    with pytest.raises(ValueError, match="smooth must be a whole number of frames"):
        Smoother(0)


def test_config_takes_smoothing_from_calibration_and_refuses_another_length():
    cal = {"rule": "error", "thresholds": {"error": 7.0}, "smooth": 3}
    assert ScorerConfig().build(cal, 255.0).smooth == 3
    assert ScorerConfig().build({"rule": "error", "thresholds": {"error": 7.0}}, 255.0).smooth == 1
    with pytest.raises(ValueError, match="calibrated thresholds assume scorer.smooth 3"):
        ScorerConfig(smooth=1).build(cal, 255.0)
    assert ScorerConfig(smooth=5, threshold=9.0).build(cal, 255.0).smooth == 5


def test_review_fixes_top_needs_its_baseline_and_smoothing_is_whole_frames():
    cal = {"rule": "top", "thresholds": {"top": 196.0}, "arrays": ["baseline", "spread"]}
    with pytest.raises(ValueError, match="calibrated thresholds assume the baseline"):
        ScorerConfig(baseline=False).build(cal, 255.0)
    with pytest.raises(ValueError, match="smooth must be a whole number of frames"):
        ScorerConfig(smooth=True)


def test_a_score_message_never_carries_nan():
    from stream.detector.publish import _finite_or_none
    assert _finite_or_none(np.float32(2.5)) == 2.5
    assert _finite_or_none(np.float32("nan")) is None
    assert _finite_or_none(np.float64("inf")) is None
