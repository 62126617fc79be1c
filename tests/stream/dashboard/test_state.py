"""The dashboard's state from messages shaped as the detector publishes them."""

from stream.dashboard.state import LiveState
from stream.wire.topics import AlertMessage, EosMessage, ScoreMessage, StatusMessage


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _status(ts, received, scored, dropped=0, overrun=0, interval=1.0, inference_s=None,
            **extra):
    return StatusMessage.from_dict({
        "ts": ts, "uptime_s": 5.0, "rule": "peak", "threshold": 10.0,
        "status_interval": interval, "rejected": {"bad_json": 2}, "subscriptions": ["status"],
        "streams": {"cam": {"received": received, "scored": scored, "dropped": dropped,
                            "overrun": overrun, "fps": 1.0, "queue": 3, "event_open": False,
                            "events": 1, "reconnects": 2, "online": True, "clip": None,
                            **extra}},
        **({"inference_s": inference_s} if inference_s else {})})


def _score(seq, ts, score, anomalous=False):
    return ScoreMessage.from_dict({
        "stream": "cam", "seq": seq, "ts": ts, "clip": None, "frame": None,
        "scores": {"error": 1.0, "area": 0, "peak": score, "motion": 0.0, "score": score},
        "threshold": 10.0, "rule": "peak", "anomalous": anomalous, "latency_ms": 80.0})


def _alert(kind, event_id, start_ts, ts, peak_seq=4, peak_score=9.0):
    return AlertMessage.from_dict({
        "type": kind, "id": event_id, "stream": "cam", "start_seq": 1, "start_ts": start_ts,
        "end_seq": 5 if kind == "end" else None, "end_ts": ts if kind == "end" else None,
        "seq": 5, "ts": ts, "score": 8.0, "peak_score": peak_score, "peak_seq": peak_seq,
        "threshold": 5.0, "frames": 3, "boxes": [[1, 2, 3, 4]], "clip": None, "frame": None})


def test_frame_rates_come_from_the_counters_over_the_last_seconds():
    state = LiveState(clock=Clock())
    state.on_status(_status(1000.0, received=10, scored=5))
    state.on_status(_status(1002.0, received=30, scored=25, dropped=4, overrun=2))
    view = state.streams["cam"]
    assert view.rates == {"capture": 12.0, "processed": 10.0, "dropped": 3.0}
    state.on_status(_status(1004.0, received=30, scored=25, dropped=4, overrun=2))
    assert view.rates["processed"] == 5.0                  # 20 frames over the last 4 s
    state.on_status(_status(1008.0, received=30, scored=25, dropped=4, overrun=2))
    assert view.rates["processed"] == 0.0                  # nothing in the last 5 s
    state.on_status(_status(1009.0, received=3, scored=1))  # a new session: counters restart
    assert view.rates["processed"] == 0.0
    state.on_status(_status(1010.0, received=13, scored=11))
    assert view.rates["processed"] == 10.0
    summary = view.summary()
    assert summary["online"] and summary["queue"] == 3 and summary["reconnects"] == 2


def test_the_detector_is_unreachable_after_three_silent_status_intervals():
    clock = Clock()
    state = LiveState(clock=clock)
    assert not state.reachable() and state.detector()["last_status_s"] is None
    state.on_status(_status(1000.0, 1, 1, interval=0.5))
    clock.now += 1.4
    assert state.reachable()
    clock.now += 0.2
    assert not state.reachable() and state.detector()["last_status_s"] == 1.6


def test_scores_are_kept_for_the_history_span_and_handed_out_once():
    state = LiveState(history_s=10, clock=Clock())
    for i in range(30):
        state.on_score(_score(i, 1000.0 + i, float(i), anomalous=i > 25))
    view = state.streams["cam"]
    assert [p[0] for p in view.scores] == [1000.0 + i for i in range(19, 30)]
    assert len(view.take_pending()) == 30 and view.take_pending() == []
    assert view.scores[-1] == (1029.0, 29.0, 1)
    assert view.summary()["score"] == 29.0 and view.summary()["latency_ms"] == 80.0


def test_an_ended_stream_is_no_longer_online_nor_in_an_event():
    state = LiveState(clock=Clock())
    state.on_status(_status(1000.0, 10, 10, event_open=True))
    state.on_eos(EosMessage(stream="cam", received=10, scored=10, dropped=0, overrun=0,
                            unscored=0))
    summary = state.streams["cam"].summary()
    assert summary["ended"] and not summary["online"] and not summary["event_open"]


def test_events_seen_live_newest_first_bounded():
    state = LiveState(max_events=2, clock=Clock())
    for i, kind in enumerate(["start", "start", "end", "start"]):
        event_id = ["a", "b", "a", "c"][i]
        state.on_alert(_alert(kind, event_id, start_ts=10.0 + i, ts=20.0 + i))
    assert [e["id"] for e in state.live_events()] == ["c", "a"]
    assert state.events["a"]["open"] is False
    assert state.events["c"]["snapshot"] == "/api/events/c/snapshot.jpg?peak=4"


def test_a_stream_ended_for_idleness_is_offline_with_no_counters():
    state = LiveState(clock=Clock())
    state.on_status(_status(1000.0, 10, 10))
    state.on_score(_score(9, 999.0, 3.0))
    idle = StatusMessage.from_dict({**_status(1001.0, 0, 0).to_dict(), "streams": {
        "cam": {"online": False, "last_seen": 999.5, "idle_ended": True}}})
    state.on_status(idle)
    summary = state.streams["cam"].summary()
    assert not summary["online"] and summary["received"] is None and summary["queue"] is None
    assert summary["fps"] == {"capture": 0.0, "processed": 0.0, "dropped": 0.0}
    assert summary["score"] == 3.0 and not summary["event_open"]


def test_a_streams_drift_reaches_its_summary_and_an_older_detector_says_none():
    state = LiveState(clock=Clock())
    state.on_status(_status(1000.0, 10, 10))
    assert state.streams["cam"].summary()["drift"] is None   # a detector before drift
    drift = {"state": "drift", "figure": 12.5, "limit": 10.0, "clear": 7.5, "frames": 600,
             "window": 600, "since": 999.0, "reference": "calibration p90"}
    state.on_status(_status(1001.0, 20, 20, drift=drift))
    assert state.streams["cam"].summary()["drift"] == drift
