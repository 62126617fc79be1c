"""Drift: the tracker's hysteresis (pure numpy), its config, and the signal on real Ped2
footage brightened by 60 grey levels, through a real detector with weights trained and
calibrated on those frames."""

import threading

import cv2
import numpy as np
import pytest

from models.scoring import ScorerConfig
from stream.capture.frames import list_frames
from stream.config import ConfigError, build
from stream.detector.config import DetectorConfig
from stream.detector.drift import DriftConfig, DriftReference, DriftTracker
from stream.detector.events import EventConfig
from stream.detector.loop import Detector
from stream.wire.protocol import encode_frame
from stream.wire.subscriber import Subscriber
from stream.wire.topics import StatusMessage
from tests.conftest import ANY_PORT, PED2, push_socket, wait_for_status, wait_subscribed

CALIBRATION = {"percentiles": {"error": {"50": 5.0, "90": 10.0, "99": 14.0}}}


def _tracker(window: int = 10, release: float = 0.5) -> DriftTracker:
    config = DriftConfig(window=window, release=release)
    return DriftTracker(DriftReference.of(CALIBRATION, "error", 20.0, config), config)


def _push(tracker: DriftTracker, values, threshold: float = 20.0) -> list:
    return [tracker.push(v, threshold, float(i)) for i, v in enumerate(values)]


def test_the_tracker_turns_on_at_the_limit_and_clears_halfway_back_to_the_median():
    tracker = _tracker()
    assert (tracker.reference.limit, tracker.clear) == (10.0, 7.5)
    assert _push(tracker, [5.0] * 9) == [None] * 9 and tracker.state == "filling"
    assert tracker.figure is None
    _push(tracker, [5.0])
    assert tracker.state == "ok" and tracker.figure == 5.0
    # The median of 10 crosses the limit when 6 of them are high: the 6th high frame.
    changes = _push(tracker, [12.0] * 6)
    assert changes == [None] * 5 + [True] and tracker.state == "drift"
    assert tracker.since == 5.0 and tracker.figure == 12.0
    # Between the clear level (7.5) and the limit: it stays on (no flapping).
    assert _push(tracker, [9.0] * 10) == [None] * 10
    assert tracker.state == "drift" and tracker.figure == 9.0
    # Back near the calibration's median: it clears once most of the window is.
    changes = _push(tracker, [6.0] * 10)
    assert changes.count(False) == 1 and changes.index(False) == 5
    assert tracker.state == "ok" and tracker.since is None
    described = tracker.describe()
    assert described["state"] == "ok" and described["reference"] == "calibration p90"
    assert (described["limit"], described["clear"], described["frames"]) == (10.0, 7.5, 10)


def test_anomalous_frames_count_as_their_threshold_and_a_short_event_does_not_drift():
    tracker = _tracker()
    _push(tracker, [5.0] * 10)
    # 4 anomalous frames of 10 (an event): the median stays at the normal frames'.
    assert _push(tracker, [500.0] * 4) == [None] * 4
    assert tracker.state == "ok" and tracker.figure == 5.0
    # A value that is not finite is left out.
    assert _push(tracker, [float("nan"), float("inf")]) == [None, None]
    assert tracker.frames == 10 and tracker.figure == 5.0
    # Every frame over the threshold (a shift beyond it): counted at it, so drift shows.
    _push(tracker, [500.0] * 6)
    assert tracker.state == "drift" and tracker.figure == 20.0
    # Judged against a stream's lower override (8, under the limit): frames over it count
    # as 8, and a lowered threshold alone does not make the scene drift.
    low = _tracker()
    _push(low, [500.0] * 10, threshold=8.0)
    assert low.state == "ok" and low.figure == 8.0


def test_weights_without_percentiles_fall_back_on_the_threshold():
    config = DriftConfig(fallback=0.8, release=0.5)
    ref = DriftReference.of({"thresholds": {"probability": 0.5}}, "probability", 0.5, config)
    assert (ref.limit, ref.median, ref.source) == (0.4, 0.0, "threshold fallback")
    assert DriftTracker(ref, config).clear == pytest.approx(0.2)
    # Another rule than the one the percentiles were recorded for: the fallback too.
    assert DriftReference.of(CALIBRATION, "area", 30.0, config).source == "threshold fallback"
    # percentile 99 is a recorded one.
    assert DriftReference.of(CALIBRATION, "error", 20.0,
                             DriftConfig(percentile=99)).limit == 14.0


def test_drift_settings_are_checked_and_read_from_the_detector_section():
    with pytest.raises(ValueError, match="percentile must be one of"):
        DriftConfig(percentile=75)
    with pytest.raises(ValueError, match="window must be at least 2"):
        DriftConfig(window=1)
    with pytest.raises(ValueError, match="release must be within"):
        DriftConfig(release=1.5)
    config = build(DetectorConfig, {"drift": {"window": 30, "percentile": 99}}, "p.yaml: detector")
    assert config.drift == DriftConfig(window=30, percentile=99)
    with pytest.raises(ConfigError, match=r"detector.drift: unknown key 'windw'"):
        build(DetectorConfig, {"drift": {"windw": 30}}, "p.yaml: detector")
    assert DetectorConfig().drift == DriftConfig()


def _clips(brighten: int = 0) -> list[tuple[str, int, np.ndarray]]:
    """The frames the tiny weights were trained and calibrated on (12 of Train001-003),
    brightened by ``brighten`` grey levels (saturating)."""
    frames = []
    for c in range(1, 4):
        clip = f"Train{c:03d}"
        for i, path in enumerate(list_frames(PED2 / "Train" / clip)[:12]):
            image = cv2.imread(str(path))
            if brighten:
                image = cv2.add(image, np.full_like(image, brighten))
            frames.append((clip, i + 1, image))
    return frames


@pytest.mark.timeout(300)
def test_brightened_ped2_footage_drifts_within_the_window_and_clears_when_it_returns(
        tiny_trained, tmp_path):
    """Weights trained and calibrated on 36 real Ped2 frames, scored by mean reconstruction
    error (the rule a brightness change moves; the tiny model's calibrated ``motion`` rule
    is blind to a constant offset): as is, the window's median stays under the calibration's
    90th percentile; +60 grey levels turns drift on within the 24-frame window, and the
    footage as it was clears it."""
    weights = tiny_trained("stae")
    window = 24
    det = Detector(DetectorConfig(bind=ANY_PORT, publish=ANY_PORT, control=ANY_PORT,
                                  model=str(weights), device="cpu", precision="fp32",
                                  stride=2, status_interval=0.2,
                                  events_db=str(tmp_path / "e.db"),
                                  drift=DriftConfig(window=window)),
                   ScorerConfig(rule="error"), EventConfig(open_frames=1))
    stop = threading.Event()
    thread = threading.Thread(target=det.run, args=(stop,))
    thread.start()
    seq = 0

    def play(frames, push) -> int:
        nonlocal seq
        first = seq
        for clip, index, image in frames:
            push.send_multipart(encode_frame("cam", seq, 1000.0 + seq, image, clip=clip,
                                             frame=index))
            seq += 1
        return first

    def drift_after(sub, frames: int) -> dict:
        status = wait_for_status(sub, lambda s: s["streams"].get("cam", {}).get("scored")
                                 == frames, 120, f"{frames} frames scored")
        return StatusMessage.from_dict(status).streams["cam"].drift

    try:
        with Subscriber(det.endpoints["publish"], ["status"]) as sub:
            wait_subscribed(sub, ["status"])
            push = push_socket(det.endpoints["bind"])
            as_is = _clips()
            play(as_is, push)
            calm = drift_after(sub, 36)
            assert calm.reference == "calibration p90" and calm.window == window
            assert calm.state == "ok" and calm.figure < calm.limit, calm
            first_bright = play(_clips(60), push)
            drifted = drift_after(sub, 72)
            assert drifted.state == "drift" and drifted.figure >= drifted.limit, drifted
            # Turned on by a brightened frame, at most a window of frames after the first.
            assert 0 <= drifted.since - (1000.0 + first_bright) < window
            play(as_is, push)
            back = drift_after(sub, 108)
            assert back.state == "ok" and back.figure < back.clear and back.since is None, back
            push.close(linger=0)
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()


def test_the_status_drift_field_is_additive_on_the_wire():
    """Version 1 still: a status without ``drift`` (an older detector) reads as None, one
    with it round-trips, and a wrong type in it is named."""
    from stream.wire.topics import TopicError, decode_topic

    entry = {"received": 5, "scored": 5, "dropped": 0, "overrun": 0, "fps": 1.0, "queue": 0,
             "event_open": False, "events": 0, "reconnects": 0, "online": True, "clip": None}
    base = {"v": 1, "ts": 1.0, "uptime_s": 1.0, "rejected": {}, "rule": "error",
            "threshold": 20.0, "status_interval": 1.0}
    old = StatusMessage.from_dict({**base, "streams": {"cam": entry}})
    assert old.streams["cam"].drift is None and "drift" not in old.to_dict()["streams"]["cam"]
    tracker = _tracker()
    _push(tracker, [5.0] * 10)
    new = StatusMessage.from_dict({**base, "streams": {"cam": {**entry,
                                                               "drift": tracker.describe()}}})
    assert decode_topic(new.to_parts()) == new
    assert new.streams["cam"].drift.state == "ok" and new.streams["cam"].drift.figure == 5.0
    with pytest.raises(TopicError, match="drift"):
        StatusMessage.from_dict({**base, "streams": {"cam": {
            **entry, "drift": {**tracker.describe(), "limit": "high"}}}})
