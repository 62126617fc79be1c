"""``vadstream adapt`` through real processes: a real detector (``vadstream detect``) with
tiny trained predictor weights scores real Ped2 frames from a real capture, an event is
labelled ``normal`` over the control endpoint, and ``vadstream adapt`` (a subprocess)
fine-tunes, validates and swaps live, or refuses naming the check; ``--rollback`` puts the
old weights back. Also the ``adapt:`` settings, and a classifier's labelled parts.

The drift signal on a brightness change of real footage is
tests/stream/test_drift.py::test_brightened_ped2_footage_drifts_within_the_window_and_clears_when_it_returns.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from models.weights import load_weights, weights_paths
from stream.adapt import AdaptConfig, AdaptRecord
from stream.capture.frames import list_frames
from stream.config import ConfigError
from stream.defaults import THRESHOLD_RANGE
from stream.pipeline import load_pipeline
from stream.store import EventStore
from stream.wire.control import ControlClient
from stream.wire.subscriber import Subscriber
from tests.conftest import PED2, start_detector, stop, until_eos, vadstream, vadstream_run, wait_for

STREAM = "cam"


def test_adapt_settings_are_checked_and_read_from_the_pipeline_config(tmp_path):
    with pytest.raises(ValueError, match="adapt.epochs must be at least 1, got 0"):
        AdaptConfig(epochs=0)
    with pytest.raises(ValueError, match=r"adapt.nice must be within 0..19, got 25"):
        AdaptConfig(nice=25)
    config = tmp_path / "pipeline.yaml"
    config.write_text("adapt:\n  auto: true\n  min_labels: 2\n  normal: [footage/a]\n")
    pipe = load_pipeline(config)
    assert pipe.adapt == AdaptConfig(auto=True, min_labels=2, normal=("footage/a",))
    config.write_text("adapt:\n  epoch: 2\n")
    with pytest.raises(ConfigError, match="epoch"):
        load_pipeline(config)


def test_run_starts_the_automatic_adaptation_beside_the_detector_only_when_asked(tmp_path):
    from stream.apps.supervisor import Supervisor

    config = tmp_path / "pipeline.yaml"
    for auto, expected in ((False, []), (True, ["adapt"])):
        config.write_text(f"adapt:\n  auto: {str(auto).lower()}\n")
        sup = Supervisor(config, load_pipeline(config))
        assert [w.child.name for w in sup.services] == expected
    argv = sup.services[0].child.argv
    assert argv[-4:] == ["adapt", "--watch", "--config", str(config)]


def test_a_labelled_classifiers_parts_go_into_class_folders(tmp_path):
    from train.adapt import adapt, collect_parts

    db = tmp_path / "events.sqlite3"
    frame = cv2.imread(str(list_frames(PED2 / "Train" / "Train001")[0]))
    jpeg = cv2.imencode(".jpg", frame)[1].tobytes()
    with EventStore(db) as store:
        for event_id, label in (("e1", "normal"), ("e2", "anomaly"), ("e3", None)):
            for kind in ("start", "end"):
                store.append({"type": kind, "id": event_id, "stream": "belt", "ts": 1.0})
            store.put_snapshot(event_id, "belt", 1, jpeg)
            if label:
                store.label(event_id, label, who="ann", via="cli")
    counts = collect_parts("belt", db, tmp_path / "adapted")
    parts = tmp_path / "adapted" / "belt" / "parts"
    assert counts == {"ok_labelled": 1, "def_labelled": 1}
    assert (parts / "ok_labelled" / "e1.png").is_file()
    assert (parts / "def_labelled" / "e2.png").is_file()
    assert not list(parts.rglob("e3.png"))
    with pytest.raises(ValueError, match="cam classifier, trained on labelled parts: it is "
                                         "not fine-tuned on footage"):
        adapt("belt", "models/weights/casting_cam", db, AdaptConfig())


def _footage(tmp_path, first: int, count: int):
    folder = tmp_path / "footage" / "Train004"
    folder.mkdir(parents=True)
    for path in list_frames(PED2 / "Train" / "Train004")[first:first + count]:
        (folder / path.name).symlink_to(path)
    return folder


def _labelled_event(tmp_path, weights):
    """A detector on ``weights`` whose stream ``cam`` raised one event (a threshold
    override at the lowest allowed flags every frame) on real frames, its clip written and
    labelled ``normal`` over the control endpoint; the detector, its endpoints, the id."""
    config = tmp_path / "pipeline.yaml"
    config.write_text(json.dumps({
        "detector": {"model_dirs": [str(tmp_path / "adapted")]},
        "clips": {"overlay": False, "pre_s": 0.5, "post_s": 0.5}}))
    db = tmp_path / "events.sqlite3"
    proc, ends = start_detector(tmp_path / "ready.json", "--config", str(config), "--model",
                                str(weights), "--events-db", str(db))
    try:
        sub = Subscriber(ends["publish"], ["eos.", "alert."])
        with ControlClient(ends["control"]) as control:
            calibrated = control.set_threshold(STREAM, None)["calibrated_threshold"]
            control.set_threshold(STREAM, calibrated / THRESHOLD_RANGE)
        capture = vadstream("capture", "--source", str(_footage(tmp_path, 0, 24)),
                            "--stream-id", STREAM, "--connect", ends["bind"], "--fps", "20")
        got = until_eos(sub, STREAM, timeout=120)
        capture.wait(30)
        sub.close()
        ids = [m.payload["id"] for m in got if m.topic.startswith("alert.")
               and m.payload["type"] == "end"]
        assert ids, "the lowered threshold raised no event"

        def clip_written():
            with EventStore(db, readonly=True) as store:
                return store.clip(ids[0])
        wait_for(clip_written, 60, "the event's clip")
        with ControlClient(ends["control"]) as control:
            control.label(STREAM, ids[0], "normal", who="test", via="test")
    except BaseException:
        stop(proc)
        raise
    return proc, ends, db, ids[0]


def _live_model(control_endpoint: str) -> str:
    with ControlClient(control_endpoint) as control:
        return control.state()["streams"][STREAM]["model"]


def _same(a: str, b: str) -> bool:
    return weights_paths(a)[0].resolve() == weights_paths(b)[0].resolve()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_tiny_adaptation_passes_swaps_live_and_rolls_back(tmp_path, tiny_trained):
    weights = tiny_trained("predictor")
    proc, ends, db, event_id = _labelled_event(tmp_path, weights)
    out = tmp_path / "adapted"
    try:
        result_file = tmp_path / "result.json"
        done = vadstream_run("adapt", "--stream", STREAM, "--events-db", str(db), "--control",
                             ends["control"], "--out-dir", str(out), "--epochs", "1",
                             "--windows-per-epoch", "8", "--normal-clips", "2",
                             "--proxy-clips", "1", "--margin", "1", "--json",
                             str(result_file), timeout=800)
        assert done.returncode == 0, done.stdout + done.stderr
        result = json.loads(result_file.read_text())
        adapted = result["weights"]
        assert f"adapt: stream {STREAM} now on {adapted}" in done.stdout
        assert "fine-tuning" in done.stdout and "validating" in done.stdout
        assert result["labels"] == [event_id]
        assert result["checks"]["false_alarms"][event_id]["events"] == 0
        # Live: the detector scores the stream with the adapted copy, a new file.
        assert _same(_live_model(ends["control"]), adapted)
        assert not _same(adapted, str(weights))
        _, meta = load_weights(adapted)
        assert meta.provenance["adapted"]["labels"] == [event_id]
        record = AdaptRecord(out, STREAM)
        assert [e["action"] for e in record.history()] == ["adapt"]
        assert record.read_progress()["stage"] == "live"

        back = vadstream_run("adapt", "--rollback", STREAM, "--control", ends["control"],
                             "--out-dir", str(out), timeout=120)
        assert back.returncode == 0, back.stdout + back.stderr
        assert _same(_live_model(ends["control"]), str(weights))
        assert [e["action"] for e in record.history()] == ["adapt", "rollback"]
        # Nothing left to take back: the stream runs weights no adaptation put live.
        again = vadstream_run("adapt", "--rollback", STREAM, "--control", ends["control"],
                              "--out-dir", str(out), timeout=120)
        assert again.returncode == 2
        assert "which no adaptation" in again.stderr and "nothing to roll back" in again.stderr
    finally:
        stop(proc)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_an_adaptation_that_fails_a_check_is_refused_and_changes_nothing(tmp_path,
                                                                         tiny_trained):
    weights = tiny_trained("predictor")
    proc, ends, db, event_id = _labelled_event(tmp_path, weights)
    out = tmp_path / "adapted"
    try:
        # A threshold at the median of normal footage: the labelled false alarm still
        # raises events under it.
        done = vadstream_run("adapt", "--stream", STREAM, "--events-db", str(db), "--control",
                             ends["control"], "--out-dir", str(out), "--threshold-only",
                             "--false-alarm-rate", "0.5", "--normal-clips", "2",
                             "--proxy-clips", "1", timeout=800)
        assert done.returncode == 3, done.stdout + done.stderr
        refusal = [line for line in done.stdout.splitlines()
                   if line.startswith("adapt: refused:")]
        assert refusal == [refusal[0]] and "check false_alarms failed" in refusal[0]
        assert f"event {event_id} labelled normal would still raise" in refusal[0]
        assert _same(_live_model(ends["control"]), str(weights))
        history = AdaptRecord(out, STREAM).history()
        assert [(e["action"], e["check"]) for e in history] == [("refused", "false_alarms")]
        assert not list(out.rglob("*.params"))
    finally:
        stop(proc)


def test_the_drill_flower_bed_covers_its_box_only():
    from stream.apps.adapt_drill import GREYS, bed

    grey = np.full((240, 360), 20, np.uint8)
    planted = bed(grey)
    changed = np.argwhere(planted != grey)
    assert changed.min(axis=0).tolist() == [75, 197] and changed.max(axis=0).tolist() == [119,
                                                                                         297]
    box = planted[75:120, 197:298]
    assert GREYS[0] <= box.min() and box.max() <= GREYS[1] and len(np.unique(box)) > 50
    assert (bed(grey) == planted).all()      # the same bed in every frame
