import pytest

from stream.detector.events import EventTracker, FrameVerdict


def feed(tracker, pattern, start=0):
    alerts = []
    for i, flag in enumerate(pattern):
        seq = start + i
        alerts += tracker.update(FrameVerdict(seq, 100.0 + seq / 10, flag == "x",
                                              float(seq if flag == "x" else 0), [[seq, 0, 1, 1]]))
    return alerts


def test_opens_after_open_frames_and_closes_after_close_frames():
    t = EventTracker("cam", threshold=5.0, open_frames=3, close_frames=2, update_every=0)
    alerts = feed(t, "xx.x.xxx.x..x")
    assert [a["type"] for a in alerts] == ["start", "end"]
    start, end = alerts
    assert start["start_seq"] == 5 and start["start_ts"] == pytest.approx(100.5)
    assert start["end_seq"] is None and start["end_ts"] is None
    assert end["id"] == start["id"]
    assert end["end_seq"] == 9 and end["end_ts"] == pytest.approx(100.9)
    assert end["peak_score"] == 9.0 and end["threshold"] == 5.0 and end["frames"] == 4
    assert end["boxes"] == [[9, 0, 1, 1]]  # boxes of the peak frame


def test_short_runs_never_open():
    t = EventTracker("cam", threshold=1.0, open_frames=3, close_frames=2)
    assert feed(t, "xx.xx.x.xx.") == []


def test_updates_while_open_and_forced_close():
    t = EventTracker("cam", threshold=1.0, open_frames=1, close_frames=5, update_every=2)
    alerts = feed(t, "xxxxx")
    assert [a["type"] for a in alerts] == ["start", "update", "update"]
    assert {a["id"] for a in alerts} == {alerts[0]["id"]}
    end = t.close()
    assert end["type"] == "end" and end["end_seq"] == 4 and t.close() is None


def test_each_event_gets_its_own_id():
    t = EventTracker("cam", threshold=1.0, open_frames=1, close_frames=1, update_every=0)
    alerts = feed(t, "x.x.")
    assert [a["type"] for a in alerts] == ["start", "end", "start", "end"]
    assert alerts[0]["id"] != alerts[2]["id"]


def test_alerts_carry_the_documented_keys():
    t = EventTracker("cam", threshold=1.0, open_frames=1)
    (start,) = feed(t, "x")
    for key in ("type", "id", "stream", "start_seq", "start_ts", "end_seq", "end_ts", "score",
                "peak_score", "threshold", "boxes"):
        assert key in start


def test_bad_hysteresis_is_refused():
    with pytest.raises(ValueError, match="open_frames and close_frames must be >= 1"):
        EventTracker("cam", 1.0, open_frames=0)
