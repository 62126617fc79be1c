"""The next-frame predictor: shapes, what its family accepts, its loss, and causality (a
frame's prediction and score never read a later frame)."""

import mxnet as mx
import numpy as np
import pytest

from models import InputContract, Predictor, WeightsMeta, get_family, get_model, load_weights
from models.predictor.family import prediction_loss
from models.scoring import RULES, Scorer
from tests.conftest import PED2
from train.data import load_clip
from train.offline import score_clip


def _net(context=3, size=32, motion=False):
    mx.random.seed(3)
    net = get_model("predictor", context=context, size=size, channels=[4, 4, 8, 8], hidden=8,
                    motion=motion)
    net.initialize(mx.init.Xavier())
    return net


def test_untrained_it_predicts_that_nothing_moves():
    net = _net()
    x = mx.nd.random.uniform(shape=(2, 4, 32, 32))
    np.testing.assert_array_equal(net(x).asnumpy(), x[:, 2:3].asnumpy())


def test_predicts_the_last_frame_of_a_window_from_the_ones_before():
    net = _net()
    assert isinstance(net, Predictor)
    net.out.weight.set_data(mx.nd.random.normal(scale=0.1, shape=net.out.weight.shape))
    x = mx.nd.random.uniform(shape=(2, 4, 32, 32))
    y = net(x).asnumpy()
    assert y.shape == (2, 1, 32, 32)
    # The network never reads the frame it predicts.
    changed = x.copy()
    changed[:, 3] = mx.nd.random.uniform(shape=(2, 32, 32))
    np.testing.assert_array_equal(net(changed).asnumpy(), y)
    # It does read the frames before it (the newest through the skip connections).
    for t in (0, 2):
        earlier = x.copy()
        earlier[:, t] += 0.5
        assert np.abs(net(earlier).asnumpy() - y).max() > 1e-4


def test_a_motion_input_reads_each_context_frame_and_its_predecessor_not_the_target():
    net = _net(motion=True)
    assert net.enc0.weight.shape[1] == 2                  # the frame and its change
    x = mx.nd.random.uniform(shape=(2, 5, 32, 32))        # a frame before the 3 of context
    np.testing.assert_array_equal(net(x).asnumpy(), x[:, 3:4].asnumpy())   # untrained
    net.out.weight.set_data(mx.nd.random.normal(scale=0.1, shape=net.out.weight.shape))
    y = net(x).asnumpy()
    changed = x.copy()
    changed[:, 4] = mx.nd.random.uniform(shape=(2, 32, 32))
    np.testing.assert_array_equal(net(changed).asnumpy(), y)
    for t in (0, 3):                  # the first context frame's predecessor, the newest
        earlier = x.copy()
        earlier[:, t] += 0.5
        assert np.abs(net(earlier).asnumpy() - y).max() > 1e-4


@pytest.mark.parametrize("kwargs, match", [
    ({"size": 100}, "multiple of 8"),
    ({"context": 0}, "context must be at least 1"),
    ({"channels": (4, 4, 4)}, "channels takes 4 positive values"),
])
def test_refuses_arguments_it_cannot_build(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Predictor(**kwargs)


def test_family_windows_are_the_context_and_the_predicted_frame():
    family = get_family("predictor")
    args = {"context": 4, "size": 128}
    assert family.window(args) == 5 and family.window({}) == 5
    meta = WeightsMeta(model="predictor", model_args=args, window=5,
                       contract=InputContract(size=128))
    temporal = family.temporal(meta)
    assert (temporal.window, temporal.scorable, temporal.lookback) == (5, 1, 0)
    assert family.rules(meta) == tuple(r for r in RULES if r != "motion")
    with pytest.raises(ValueError, match="the window must be the context plus"):
        family.temporal(WeightsMeta(model="predictor", model_args=args, window=4,
                                    contract=InputContract(size=128)))
    with pytest.raises(ValueError, match="size 227 differs from the network's frame side 128"):
        family.temporal(WeightsMeta(model="predictor", model_args=args, window=5,
                                    contract=InputContract(size=227)))
    # A motion input adds the first context frame's predecessor to the window.
    motion = {**args, "motion": True}
    assert family.window(motion) == 6
    assert family.temporal(WeightsMeta(model="predictor", model_args=motion, window=6,
                                       contract=InputContract(size=128))).window == 6
    with pytest.raises(ValueError, match="one frame before them with `motion`"):
        family.temporal(WeightsMeta(model="predictor", model_args=motion, window=5,
                                    contract=InputContract(size=128)))


def test_loss_is_zero_for_a_perfect_prediction_and_counts_each_term():
    rng = np.random.default_rng(0)
    windows = mx.nd.array(rng.uniform(size=(2, 4, 16, 16)))
    target = windows[:, 3:4]
    np.testing.assert_allclose(prediction_loss(target, windows).asnumpy(), 0, atol=1e-7)
    # Predicting "nothing moves" (the last context frame): the intensity term is the mean
    # squared frame difference, and the temporal term the mean absolute one.
    prev = windows[:, 2:3]
    diff = (target - prev).asnumpy()
    loss = prediction_loss(prev, windows).asnumpy()
    gradient = sum(np.abs(np.abs(np.diff(p, axis=a)) - np.abs(np.diff(t, axis=a))).mean(
        axis=(1, 2, 3)) for a in (2, 3) for p, t in [(prev.asnumpy(), target.asnumpy())])
    want = (diff ** 2).mean(axis=(1, 2, 3)) + gradient + np.abs(diff).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(loss, want, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_scores_of_a_real_clip_are_causal(tiny_trained):
    """Changing frames k.. of Test001 changes no score of a frame before k, and changes
    frame k's."""
    path = tiny_trained("predictor")
    net, meta = load_weights(path)
    frames = load_clip(PED2 / "Test" / "Test001", meta.contract, count=40)
    scorer = Scorer(rule="error", threshold=1.0, pixel_scale=meta.contract.pixel_scale)
    before = score_clip(net, frames, meta.window, 1, scorer, mx.cpu())
    context = meta.window - 1
    assert np.isnan(before["score"][:context]).all()      # nothing to predict them from
    assert np.isfinite(before["score"][context:]).all()
    k = 25
    altered = frames.copy()
    altered[k:] = np.random.default_rng(1).uniform(size=altered[k:].shape)
    after = score_clip(net, altered, meta.window, 1, scorer, mx.cpu())
    for key in ("score", "error", "peak", "area"):
        np.testing.assert_array_equal(after[key][context:k], before[key][context:k])
    assert abs(after["score"][k] - before["score"][k]) > 1.0


def test_offline_scoring_refuses_a_stride_that_skips_frames(tiny_trained):
    net, meta = load_weights(tiny_trained("predictor"))
    frames = load_clip(PED2 / "Test" / "Test001", meta.contract, count=12)
    scorer = Scorer(rule="error", threshold=1.0, pixel_scale=meta.contract.pixel_scale)
    with pytest.raises(ValueError, match="stride 2 skips frames: this model outputs 1 frame"):
        score_clip(net, frames, meta.window, 2, scorer, mx.cpu())


def test_a_rule_the_family_cannot_compute_is_refused_with_the_ones_it_can():
    meta = WeightsMeta(model="predictor", model_args={"context": 4, "size": 128}, window=5,
                       contract=InputContract(size=128))
    get_family("predictor").check_rule(meta, "top")
    with pytest.raises(ValueError, match="can be scored by rules area, peak, error, relative, "
                                         "top, not motion"):
        get_family("predictor").check_rule(meta, "motion")


def test_a_split_reading_predecessors_never_reads_the_windows_oldest_frame():
    """Its oldest frame has no predecessor in the window (the encoder gets the frame
    itself there), so no feature group may read it; the motion predictor's split reads
    the context from position 1 and the newest context frame's skips at position T."""
    from models.family import FeatureGroup, Split
    from models.predictor.split import PredictorEncoder

    encoder = PredictorEncoder((4, 4, 8, 8), 8, motion=True)
    with pytest.raises(ValueError, match="cannot read the window's oldest frame"):
        Split(encoder, {}, (FeatureGroup((1,), (0, 1)),), previous=True)
    Split(encoder, {}, (FeatureGroup((1,), (0, 1)),))              # without: any position
    net = _net(motion=True)
    net(mx.nd.zeros((1, 5, 32, 32)))
    meta = WeightsMeta(model="predictor", model_args={"context": 3, "size": 32,
                                                      "motion": True},
                       window=5, contract=InputContract(size=32))
    split = get_family("predictor").split(net, meta, mx.cpu())
    assert split.previous and split.context == 4
    assert [g.positions for g in split.groups] == [(1, 2, 3)] + [(3,)] * 4
