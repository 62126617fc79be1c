"""Evaluation on one real Ped2 test clip, end to end through the CLI."""

import json
import shutil

import numpy as np
import pytest

from tests.conftest import PED2, vadstream_run
from train.evaluate import clip_events, event_counts, fill_unscored


def _bike_clip_dataset(tmp_path):
    """A Ped2-style dataset under ``tmp_path`` with only Test002 (and its masks, and the
    official ground truth)."""
    data = tmp_path / "UCSDped2"
    test = data / "Test"
    test.mkdir(parents=True)
    for name in ("Test002", "Test002_gt"):
        (test / name).symlink_to(PED2 / "Test" / name)
    shutil.copy(PED2 / "Test" / "UCSDped2.m", test)
    return data


@pytest.mark.slow
def test_evaluate_one_real_clip_produces_every_output(tmp_path, tiny_weights):
    data = _bike_clip_dataset(tmp_path)
    run = vadstream_run("evaluate", "--model", str(tiny_weights), "--data", str(data), "--json",
                        str(tmp_path / "r.json"), "--plots", str(tmp_path / "plots"),
                        "--stride", "2", "--device", "cpu", timeout=300)   # killed past it
    out = run.stdout
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Test002" in out and "EER paper" in out
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["model"] == str(tiny_weights)
    for key in ("frame_auc_paper", "frame_auc_online", "eer_paper", "eer_online", "f1_online",
                "frame_auc_paper_macro", "frame_auc_online_macro", "precision_online",
                "recall_online", "baseline_frame_auc_paper", "baseline_frame_auc_online",
                "baseline_frame_auc_paper_macro", "baseline_frame_auc_online_macro"):
        assert 0.0 <= r[key] <= 1.0, key
    # one clip: its macro AUC is its own AUC
    assert r["frame_auc_online_macro"] == r["frame_auc_online"]
    # the baseline needs no model: on the bike clip frame differences do separate
    assert r["baseline_frame_auc_online"] > 0.6 and r["baseline_frame_auc_paper"] > 0.6
    assert "no model" in out
    assert 0.0 <= r["pixel_auc"] <= 1.0 and r["box_hit_rate"] is not None
    (clip,) = r["clips"]
    assert clip["clip"] == "Test002" and clip["frames"] == 180 and clip["anomalous"] == 86
    assert clip["baseline_auc_online"] == r["baseline_frame_auc_online"]
    assert (tmp_path / "plots" / "roc.png").stat().st_size > 1000
    assert (tmp_path / "plots" / "Test002.png").stat().st_size > 1000
    ev = r["events"]
    assert ev["intervals"] == 1 and 0 <= ev["intervals_with_event"] <= 1
    assert ev == {k: clip[k] for k in ev} and 0 <= ev["events_outside"] <= ev["events"]
    assert "anomalous intervals raise one" in out


@pytest.mark.slow
def test_evaluate_scores_through_the_live_network_on_either_backend(tmp_path, tiny_weights):
    """``--backend`` and ``--precision`` score through the detector's engine; the two
    backends agree (fp32) and the JSON names the backend."""
    data = _bike_clip_dataset(tmp_path)
    results = {}
    for backend in ("mxnet", "onnxruntime"):
        run = vadstream_run("evaluate", "--model", str(tiny_weights), "--data", str(data),
                            "--json", str(tmp_path / f"{backend}.json"), "--stride", "2",
                            "--device", "cpu", "--precision", "fp32", "--backend", backend,
                            timeout=300)
        assert run.returncode == 0, run.stderr[-3000:]
        results[backend] = json.loads((tmp_path / f"{backend}.json").read_text())
        assert results[backend]["backend"] == backend
        assert results[backend]["precision"] == "fp32"
    a, b = results["mxnet"], results["onnxruntime"]
    assert abs(a["frame_auc_online"] - b["frame_auc_online"]) < 0.002
    assert abs(a["frame_auc_paper"] - b["frame_auc_paper"]) < 0.002
    images = vadstream_run("evaluate", "--model", str(tiny_weights), "--data",
                           str(PED2 / "Test" / "Test002"), "--normal", "x", "--backend",
                           "onnxruntime", timeout=120)
    assert images.returncode != 0 and "an image set is scored by the trained network" in \
        images.stderr


def test_absent_clips_are_skipped_not_shifted(tmp_path, tiny_weights):
    """Only Test004 present: it must be judged against entry 4 of the .m file."""
    from train.evaluate import evaluate
    test = tmp_path / "Test"
    test.mkdir()
    (test / "Test004").symlink_to(PED2 / "Test" / "Test004")
    shutil.copy(PED2 / "Test" / "UCSDped2.m", test)
    result, _ = evaluate(tiny_weights, tmp_path, stride=4)
    (clip,) = result["clips"]
    assert clip["clip"] == "Test004" and clip["anomalous"] == 150 and result["pixel_auc"] is None


def test_paper_protocol_normalises_each_clip_and_online_does_not():
    import numpy as np

    from train.evaluate import pooled_aucs, protocol_aucs
    labels = [np.array([0, 0, 1, 1], bool), np.array([0, 0, 1, 1], bool)]
    scores = [np.array([0.0, 0.1, 0.8, 0.9]), np.array([10.0, 10.1, 10.2, 10.3])]
    (paper, paper_eer), (online, _) = pooled_aucs(labels, scores)
    assert paper == 1.0 and paper_eer == 0.0       # separable within each clip
    assert online == 0.75                           # clip 2's normal frames beat clip 1's
    aucs = protocol_aucs(labels, scores)
    assert aucs["frame_auc_online"] == 0.75 and aucs["frame_auc_paper"] == 1.0
    # macro: each clip on its own, where the offset between clips does not matter
    assert aucs["frame_auc_online_macro"] == aucs["frame_auc_paper_macro"] == 1.0


def test_events_are_the_live_trackers_and_meet_intervals_by_overlap():
    decisions = np.zeros(40, bool)
    decisions[[2, 3]] = True                  # two frames: below open_frames, no event
    decisions[10:20] = True                   # one event, 10..19
    decisions[24:26] = True                   # a gap of 4 normal frames: the same event
    decisions[35:40] = True                   # open at the end: closed there
    events = clip_events(decisions, decisions.astype(float))
    assert events == [(10, 25), (35, 39)]
    # 1-based inclusive intervals: 21..30 (0-based 20..29) meets the first event; 33..34
    # meets none; the second event lies outside both.
    counts = event_counts([(21, 30), (33, 34)], events)
    assert counts == {"intervals": 2, "intervals_with_event": 1, "events": 2,
                      "events_outside": 1}


def test_frames_no_window_scores_take_the_clips_lowest_score():
    np.testing.assert_array_equal(fill_unscored(np.array([np.nan, np.nan, 3.0, 1.0])),
                                  [1.0, 1.0, 3.0, 1.0])
    assert np.isnan(fill_unscored(np.array([np.nan, np.nan]))).all()


def test_evaluate_caps_the_stride_at_what_one_window_scores(tmp_path, tiny_trained):
    from train.evaluate import evaluate
    data = _bike_clip_dataset(tmp_path)
    result, clips = evaluate(tiny_trained("predictor"), data, stride=5)
    assert result["stride"] == 1          # a predictor scores one frame per window
    (clip,) = clips
    assert np.isfinite(clip.scores).all() and len(clip.scores) == 180
    assert result["rules"].keys() <= {"area", "peak", "error", "relative", "top"}
