"""The peak frame kept for snapshots is the one the event tracker names as the peak."""

from stream.detector.events import EventTracker, FrameVerdict
from stream.detector.snapshots import PeakFrame


def test_peak_frame_follows_the_trackers_peak_through_runs_and_events():
    tracker, peak = EventTracker("cam", 1.0, open_frames=3, close_frames=2), PeakFrame()
    # a broken run (peak 9 forgotten), an event with its peak at seq 5, a tie, a new event
    scores = [9, 0, 2, 4, 3, 7, 7, 0, 0, 5, 6, 8, 0, 0]
    stored = {}
    for seq, score in enumerate(scores):
        anomalous = score >= 1
        if peak.wants(anomalous, score, tracker.open_event is not None):
            peak.keep(score, seq, f"jpeg{seq}".encode())
        for alert in tracker.update(FrameVerdict(seq, float(seq), anomalous, score, [])):
            jpeg = peak.for_alert(alert)
            if jpeg is not None:
                stored[alert["id"]] = (alert["peak_seq"], jpeg)
            if alert["type"] == "end":
                peak.reset()
            assert stored[alert["id"]][0] == alert["peak_seq"]
    assert sorted(stored.values()) == [(5, b"jpeg5"), (11, b"jpeg11")]


def test_a_snapshot_is_handed_out_once_per_event_and_peak():
    peak = PeakFrame()
    peak.keep(3.0, 7, b"x")
    alert = {"id": "a", "peak_seq": 7}
    assert peak.for_alert(alert) == b"x" and peak.for_alert(alert) is None
    assert peak.for_alert({"id": "a", "peak_seq": 6}) is None      # not the frame kept
