"""The no-model frame-difference baseline on hand-made clips."""

import numpy as np
import pytest

from train.baseline import frame_difference_scores, top_share_mean


def _clip() -> np.ndarray:
    """20×20 frames in [0, 1]: two still frames, then two bright pixels appear."""
    frames = np.zeros((3, 20, 20), np.float32)
    frames[2, 5, 5] = frames[2, 6, 8] = 1.0
    return frames


def test_motion_scores_above_a_still_frame_and_the_first_frame_scores_zero():
    scores = frame_difference_scores(_clip())
    assert scores[0] == 0.0          # no frame before it: causal, like the live rule
    assert scores[1] == 0.0          # nothing moved
    assert scores[2] > scores[1]


def test_top_share_mean_by_hand():
    # 400 window sums, the top 1% is 4 of them. A 4×4 window at (i, j) covers rows
    # i-2..i+1 and columns j-2..j+1: both pixels (255 each) fall in it for i in 5..7 and
    # j = 7 (3 windows, 510); the next largest hold one pixel (255).
    assert frame_difference_scores(_clip())[2] == pytest.approx((3 * 510 + 255) / 4)


def test_the_score_is_on_the_0_255_scale_whatever_the_contract():
    # A contract with std 0.5 puts a frame at (x/255 - mean)/0.5: differences double in
    # model units, and pixel_scale 255·0.5 brings them back.
    clip = (_clip() - 0.4) / 0.5
    assert frame_difference_scores(clip, 255.0 * 0.5)[2] == pytest.approx((3 * 510 + 255) / 4)


def test_long_clips_are_scored_in_chunks_like_short_ones():
    rng = np.random.default_rng(0)
    clip = rng.random((150, 24, 24), np.float32)
    whole = np.r_[0.0, [frame_difference_scores(clip[t - 1:t + 1])[1] for t in range(1, 150)]]
    np.testing.assert_allclose(frame_difference_scores(clip), whole, rtol=1e-6)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match=r"frames must be \(F, H, W\)"):
        frame_difference_scores(np.zeros((20, 20)))
    with pytest.raises(ValueError, match=r"share must be in \(0, 1\]"):
        top_share_mean(np.zeros((1, 4, 4)), share=0.0)
