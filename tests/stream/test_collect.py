"""``vadstream collect``: a real video's footage as clip folders that ``vadstream train``
reads; a still stretch is skipped."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import yaml

from models.weights import read_meta
from stream.capture.collect import CollectConfig, collect
from stream.capture.frames import list_clips, list_frames
from stream.capture.sources import FolderSource
from tests.conftest import ROOT, TINY_FAMILIES, VTEST, vadstream_run


def _vtest_frames(n: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(VTEST))
    frames = []
    while len(frames) < n:
        ok, frame = cap.read()
        assert ok, f"{VTEST} has fewer than {n} frames"
        frames.append(frame)
    cap.release()
    return frames


def train_tiny_on(collected, tmp_path):
    """``vadstream train`` with the example config (a tiny predictor, one short epoch) on a
    folder ``vadstream collect`` wrote; the weights' stem."""
    config = yaml.safe_load((ROOT / "configs" / "collect_example.yaml").read_text())
    args, contract = TINY_FAMILIES["predictor"]
    config["model"] = {"name": "predictor", **args}
    config["contract"]["size"] = contract.size
    config["training"].update(epochs=1, batch_size=4, windows_per_epoch=8, val_clips=1)
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text(yaml.safe_dump(config))
    weights = tmp_path / "w" / "cam"
    done = vadstream_run("train", "--config", str(tiny), "--data", str(collected), "--out",
                         str(weights), "--device", "cpu", timeout=200)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    return weights


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_collect_a_real_video_then_train_a_tiny_model_on_it(tmp_path):
    out = tmp_path / "cam"
    done = vadstream_run("collect", "--source", str(VTEST), "--out", str(out),
                         "--minutes", "0.1", "--clip-frames", "20", "--min-clip-frames", "8")
    assert done.returncode == 0, done.stdout + done.stderr
    # 6 s of a 10 fps video: 60 frames; the first has none before it to tell motion by
    clips = list_clips(out / "Train")
    assert [c.name for c in clips] == ["Train001", "Train002", "Train003"]
    assert [len(list_frames(c)) for c in clips] == [20, 20, 19]
    assert [p.name for p in list_frames(clips[0])][:2] == ["0001.png", "0002.png"]
    first = cv2.imread(str(list_frames(clips[0])[0]), cv2.IMREAD_UNCHANGED)
    source = _vtest_frames(2)[1]
    assert first.shape == source.shape[:2] and first.dtype == np.uint8   # grey, full size
    assert np.array_equal(first, cv2.cvtColor(source, cv2.COLOR_BGR2GRAY))  # lossless
    session = json.loads((out / "collect.json").read_text())["sessions"][0]
    assert session["frames"] == {"read": 60, "sampled": 60, "kept": 59, "still": 1, "short": 0}
    assert [c["frames"] for c in session["clips"]] == [20, 20, 19]
    assert "kept 59 of 60 frames" in done.stdout and "vadstream train" in done.stdout

    # The example config, with a tiny network and one short epoch, trains on the folder.
    weights = train_tiny_on(out, tmp_path)
    assert weights.with_suffix(".params").is_file()
    meta = read_meta(weights)
    assert meta.provenance["train_clips"] == ["Train001", "Train002"]
    assert meta.provenance["val_clips"] == ["Train003"]
    assert meta.calibration["rule"] in meta.calibration["thresholds"]


def test_a_still_stretch_is_skipped_and_cuts_the_clip(tmp_path):
    """Real frames moving, then the last one frozen for 3 s, then moving again (a folder
    at 10 fps): the hold keeps 0.4 s of the stillness, the rest is skipped, and each
    moving stretch is a clip of its own."""
    moving = _vtest_frames(30)
    frames = moving[:10] + [moving[9]] * 30 + moving[10:30]
    source = tmp_path / "src" / "Cam"
    source.mkdir(parents=True)
    for i, frame in enumerate(frames, 1):
        cv2.imwrite(str(source / f"{i:03d}.png"), frame)
    out = tmp_path / "cam"
    config = CollectConfig(minutes=1, hold_s=0.45, clip_frames=50, min_clip_frames=8)
    with FolderSource(source, fps=10) as src:
        result = collect(src, out, config)
    # frame 1: nothing before it; 2-10 move; 11-14 held (0.4 s); 15-40 still; 41-60 move
    assert (result.read, result.kept, result.still, result.short) == (60, 33, 27, 0)
    clips = list_clips(out / "Train")
    assert [len(list_frames(c)) for c in clips] == [13, 20]
    second = cv2.imread(str(list_frames(clips[1])[0]), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(second, cv2.cvtColor(moving[10], cv2.COLOR_BGR2GRAY))

    # A second session adds clips after these; a clip too short to keep is dropped.
    again = CollectConfig(minutes=1, hold_s=0.45, clip_frames=50, min_clip_frames=15)
    with FolderSource(source, fps=10) as src:
        result = collect(src, out, again)
    assert (result.kept, result.short) == (20, 13)
    assert [c.name for c in list_clips(out / "Train")] == ["Train001", "Train002", "Train003"]
    manifest = json.loads((out / "collect.json").read_text())
    assert [s["clips"] for s in manifest["sessions"]][1] == [
        {"name": "Train003", "frames": 20, "start_s": 4.0}]


def test_fps_subsamples_and_bad_settings_are_refused(tmp_path):
    with FolderSource(_folder(tmp_path), fps=10) as src:
        result = collect(src, tmp_path / "out", CollectConfig(fps=5, motion=0, clip_frames=5,
                                                             min_clip_frames=1))
    assert (result.read, result.sampled, result.kept) == (20, 10, 10)
    with pytest.raises(ValueError, match="min_clip_frames must be from 1 to clip_frames"):
        CollectConfig(clip_frames=10, min_clip_frames=20)
    with pytest.raises(ValueError, match="minutes must be more than 0"):
        CollectConfig(minutes=0)


def _folder(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(_vtest_frames(20), 1):
        cv2.imwrite(str(folder / f"{i:03d}.png"), frame)
    return folder
