"""/metrics text from the dashboard's state, parsed back with Prometheus' own parser."""

from prometheus_client.parser import text_string_to_metric_families

from stream.dashboard.metrics import DashboardCollector, render
from stream.dashboard.state import LiveState
from tests.stream.dashboard.test_state import Clock, _score, _status


def _samples(state, clients=0):
    text = render(DashboardCollector(state, lambda: clients)).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_carry_the_detectors_numbers():
    clock = Clock()
    state = LiveState(clock=clock)
    first = _status(1000.0, received=10, scored=5)
    state.on_status(first)
    second = _status(1002.0, received=30, scored=25, dropped=4, overrun=2,
                     inference_s={"bounds": [0.01, 0.1], "counts": [3, 7], "sum": 0.42,
                                  "count": 8})
    state.on_status(second)
    state.on_score(_score(30, 1001.9, 12.5, anomalous=True))
    got = _samples(state, clients=2)
    cam = (("stream", "cam"),)
    assert got[("vadstream_detector_up", ())] == 1
    assert got[("vadstream_dashboard_clients", ())] == 2
    assert got[("vadstream_capture_fps", cam)] == 12.0
    assert got[("vadstream_processed_fps", cam)] == 10.0
    assert got[("vadstream_dropped_fps", cam)] == 3.0
    assert got[("vadstream_frames_scored_total", cam)] == 25
    assert got[("vadstream_frames_dropped_total", cam)] == 4
    assert got[("vadstream_events_opened_total", cam)] == 1
    assert got[("vadstream_reconnects_total", cam)] == 2
    assert got[("vadstream_queue_depth", cam)] == 3
    assert got[("vadstream_anomaly_score", cam)] == 12.5
    assert got[("vadstream_frame_latency_seconds", cam)] == 0.08
    assert got[("vadstream_rejected_messages_total", (("reason", "bad_json"),))] == 2
    assert got[("vadstream_inference_seconds_bucket", (("le", "0.01"),))] == 3
    assert got[("vadstream_inference_seconds_bucket", (("le", "0.1"),))] == 7
    assert got[("vadstream_inference_seconds_bucket", (("le", "+Inf"),))] == 8
    assert got[("vadstream_inference_seconds_count", ())] == 8
    assert got[("vadstream_inference_seconds_sum", ())] == 0.42


def test_no_stale_numbers_while_no_detector_is_reachable():
    clock = Clock()
    state = LiveState(clock=clock)
    state.on_status(_status(1000.0, received=10, scored=5))
    clock.now += 10
    assert _samples(state) == {("vadstream_detector_up", ()): 0,
                               ("vadstream_dashboard_clients", ()): 0}


def test_drift_gauges_follow_the_status_and_are_left_out_without_it():
    state = LiveState(clock=Clock())
    state.on_status(_status(1000.0, received=10, scored=5))
    assert not any(name.startswith("vadstream_drift") for name, _ in _samples(state))
    drift = {"state": "drift", "figure": 12.5, "limit": 10.0, "clear": 7.5, "frames": 600,
             "window": 600, "since": 999.0, "reference": "calibration p90"}
    state.on_status(_status(1001.0, received=20, scored=15, drift=drift))
    got, cam = _samples(state), (("stream", "cam"),)
    assert got[("vadstream_drift", cam)] == 1
    assert (got[("vadstream_drift_figure", cam)], got[("vadstream_drift_limit", cam)]) == (
        12.5, 10.0)
    state.on_status(_status(1002.0, received=30, scored=25,
                            drift={**drift, "state": "filling", "figure": None, "since": None}))
    got = _samples(state)
    assert got[("vadstream_drift", cam)] == 0 and ("vadstream_drift_figure", cam) not in got
