import json

import numpy as np
import pytest

from models import InputContract, read_meta
from tests.conftest import PED2, make_weights, tiny_dataset
from train.calibrate import (
    LOCAL_BOX,
    OBJECT_FEATHER,
    OBJECT_SIZE,
    OBJECT_SPEED,
    WARP_SPEED,
    _feathered,
    inject_fast_object,
    inject_local_warp,
    inject_time_warp,
    recalibrate,
)
from train.data import load_clip


def test_synthetic_object_moves_fast_through_the_second_half():
    frames = load_clip(PED2 / "Train" / "Train002", InputContract())[:120]
    altered, labels = inject_fast_object(frames)
    crossing = (227 - OBJECT_SIZE[1]) // OBJECT_SPEED + 1       # frames to cross the view
    assert not labels[:60].any() and labels[60:].sum() == crossing
    np.testing.assert_array_equal(altered[:60], frames[:60])
    np.testing.assert_array_equal(altered[60 + crossing:], frames[60 + crossing:])
    changed = [np.flatnonzero(np.abs(altered[t] - frames[t]).sum(axis=0) > 0) for t in (70, 71)]
    assert changed[1].min() - changed[0].min() == OBJECT_SPEED   # one step to the right
    # Inside its 4-px feathered edges the patch moves unchanged; at them it fades into the
    # frame under it (1/5 opaque at the border, 1/25 at a corner).
    rows = np.flatnonzero(np.abs(altered[70] - frames[70]).sum(axis=1) > 0)
    mid, inner = rows.min() + OBJECT_SIZE[0] // 2, slice(4, OBJECT_SIZE[1] - 4)
    x70, x71 = 10 * OBJECT_SPEED, 11 * OBJECT_SPEED
    np.testing.assert_array_equal(altered[71, mid, x71:x71 + OBJECT_SIZE[1]][inner],
                                  altered[70, mid, x70:x70 + OBJECT_SIZE[1]][inner])
    alpha = _feathered(*OBJECT_SIZE, OBJECT_FEATHER)
    assert alpha[mid - rows.min(), 0] == pytest.approx(0.2)
    assert alpha[0, 0] == pytest.approx(0.04) and alpha[inner, inner].min() == 1


def test_time_warp_speeds_the_busiest_band_up_without_a_cut():
    frames = load_clip(PED2 / "Train" / "Train002", InputContract())[:120]
    altered, labels = inject_time_warp(frames)
    # From frame 30 the band shows frame 30 + 3·(t − 30), while that is a frame of the clip.
    assert len(altered) == len(labels) == 30 + 89 // WARP_SPEED + 1
    assert not labels[:31].any() and labels[31:].all()
    np.testing.assert_array_equal(altered[:31], frames[:31])
    rows = np.flatnonzero(np.abs(altered[40] - frames[40]).sum(axis=1) > 1e-3)
    assert 40 <= len(rows) <= 100                # the band and its blended edges only
    middle = (rows.min() + rows.max()) // 2
    np.testing.assert_allclose(altered[40, middle], frames[60, middle], atol=1e-4)
    np.testing.assert_allclose(altered[-1, middle], frames[117, middle], atol=1e-4)


def test_local_warp_speeds_up_a_person_sized_box_only():
    frames = load_clip(PED2 / "Train" / "Train002", InputContract())[:120]
    altered, labels = inject_local_warp(frames)
    assert len(altered) == len(labels) == 30 + 89 // 2 + 1
    assert not labels[:31].any() and labels[31:].all()
    np.testing.assert_array_equal(altered[:31], frames[:31])
    changed = np.abs(altered[40] - frames[40]) > 1e-3
    rows, cols = np.flatnonzero(changed.any(axis=1)), np.flatnonzero(changed.any(axis=0))
    # The box and its blended edges, nothing else.
    assert rows.max() - rows.min() + 1 <= LOCAL_BOX[0] + 10
    assert cols.max() - cols.min() + 1 <= LOCAL_BOX[1] + 10
    y, x = (rows.min() + rows.max()) // 2, (cols.min() + cols.max()) // 2
    np.testing.assert_allclose(altered[40, y, x], frames[50, y, x], atol=1e-4)


def test_recalibrate_rewrites_the_metadata(tmp_path):
    data = tiny_dataset(tmp_path, clips=2, frames=30)
    path = make_weights(tmp_path / "w")
    meta_path = tmp_path / "w.json"
    meta = json.loads(meta_path.read_text())
    meta["provenance"].update(data=str(data), val_clips=["Train002"], train_clips=["Train001"])
    meta_path.write_text(json.dumps(meta))
    cal = recalibrate(path, stride=2, false_alarm_rate=0.05)
    saved = read_meta(path).calibration
    assert saved == json.loads(json.dumps(cal))
    assert saved["rule"] in saved["thresholds"] and saved["frames"] == 30
    # The one training clip sets the baseline, so it gives no threshold frames.
    assert saved["held_out_frames"] == 30
    assert saved["false_alarm_rate"] == 0.05 and saved["stride"] == 2


def _three_training_clips(contract):
    """The first 40 frames of Train001-003: the first sets the baseline, the other two
    are held out."""
    return [load_clip(PED2 / "Train" / name, contract)[:40]
            for name in ("Train001", "Train002", "Train003")]


@pytest.mark.slow
def test_calibration_keeps_its_false_alarm_rate_and_picks_the_best_rule(tiny_weights):
    import mxnet as mx

    from models import load_weights
    from models.scoring import RULES, Scorer
    from train.calibrate import calibrate
    net, meta = load_weights(tiny_weights)
    clips = _three_training_clips(meta.contract)
    cal, arrays, normal = calibrate(net, clips[1:], meta.window, 2, Scorer(), mx.cpu(), 0.05,
                                    clips[:1], train_clips=clips[:1])
    assert arrays["baseline"].shape == (227, 227) and set(normal) == set(RULES)
    for rule, values in normal.items():      # the held-out clips and the training clip
        assert len(values) == 120 and (values >= cal["thresholds"][rule]).mean() <= 0.05
    assert cal["frames"] == 120 and cal["held_out_frames"] == 80
    assert set(cal["held_out_false_alarm_rate"]) == set(normal)
    aucs, mean = cal["selection"]["auc"], cal["selection"]["mean_auc"]
    kinds = {"paste", "warp", "paste_slow", "warp_slow", "warp_local"}
    assert set(aucs) == kinds == set(cal["selection"]["recall_at_threshold"])
    for rule in mean:
        assert mean[rule] == np.mean([aucs[k][rule] for k in cal["selection"]["kinds"]])
        recalls = [cal["selection"]["recall_at_threshold"][k][rule] for k in kinds]
        assert all(0 <= r <= 1 for r in recalls)
    # every clip that is not the baseline's got every kind: synthetic frames from all three
    assert all(n > 0 for n in cal["selection"]["synthetic_frames"].values())
    assert cal["rule"] == max(mean, key=mean.get)
    assert arrays["spread"].shape == (227, 227) and (arrays["spread"] > 0).all()


@pytest.mark.slow
def test_calibration_compares_smoothing_lengths_when_asked(tiny_weights):
    import mxnet as mx

    from models import load_weights
    from models.scoring import Scorer, smooth_values
    from train.calibrate import calibrate
    from train.metrics import threshold_at
    from train.offline import score_clip
    net, meta = load_weights(tiny_weights)
    clips = _three_training_clips(meta.contract)
    plain, _, _ = calibrate(net, clips[1:], meta.window, 2, Scorer(), mx.cpu(), 0.05,
                            clips[:1], train_clips=clips[:1])
    assert plain["smooth"] == 1 and set(plain["selection"]["smoothing"]) == {"1"}
    cal, arrays, normal = calibrate(net, clips[1:], meta.window, 2, Scorer(), mx.cpu(), 0.05,
                                    clips[:1], train_clips=clips[:1], smoothing=(1, 3))
    by = cal["selection"]["smoothing"]
    assert set(by) == {"1", "3"} and by["1"] == {"mean_auc": plain["selection"]["mean_auc"],
                                                 "mean_recall": plain["selection"]["mean_recall"]}
    best = max((by[str(k)]["mean_auc"][r], -k, r) for k in (1, 3) for r in by["1"]["mean_auc"])
    assert (cal["rule"], cal["smooth"]) == (best[2], -best[1])
    # The thresholds are those of the values smoothed per clip (each clip a stream).
    scorer = Scorer(baseline=arrays["baseline"], spread=arrays["spread"])
    rule, k = cal["rule"], cal["smooth"]
    values = np.concatenate([v[~np.isnan(v)] for v in (
        smooth_values(score_clip(net, c, meta.window, 2, scorer, mx.cpu())[rule], k)
        for c in clips)])
    assert cal["thresholds"][rule] == pytest.approx(threshold_at(values, 0.05), rel=1e-4)
    np.testing.assert_allclose(np.sort(normal[rule]), np.sort(values), rtol=1e-5)


@pytest.mark.slow
def test_calibrate_refuses_a_smoothing_that_is_not_frame_counts(tiny_weights):
    from tests.conftest import vadstream_run
    run = vadstream_run("calibrate", "--model", str(tiny_weights), "--smoothing", "1,0",
                        timeout=120)
    assert run.returncode != 0
    assert "--smoothing takes frame counts of at least 1" in run.stderr
    assert "got '1,0'" in run.stderr
