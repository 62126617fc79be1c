"""The detector in-process, with real ZeroMQ sockets on loopback and real frames."""

import json
import threading
import time

import cv2
import mxnet as mx
import numpy as np
import pytest
import zmq

from models import load_weights
from models.scoring import ScorerConfig
from stream.capture.frames import list_frames
from stream.detector.config import DetectorConfig
from stream.detector.events import EventConfig
from stream.detector.loop import Detector
from stream.wire.protocol import encode_eos, encode_frame
from stream.wire.subscriber import Subscriber
from tests.conftest import (
    ANY_PORT,
    PED2,
    VTEST,
    push_socket,
    until_eos,
    wait_for,
    wait_for_status,
    wait_subscribed,
)
from train.offline import score_clip

TOPICS = ["score.", "eos.", "status", "alert.", "overlay."]


def _stop(stop: threading.Event, thread: threading.Thread) -> None:
    stop.set()
    thread.join(30)
    assert not thread.is_alive(), "the detector did not stop within 30 s"


@pytest.fixture
def running(tiny_weights, tmp_path):
    det = Detector(DetectorConfig(bind=ANY_PORT, publish=ANY_PORT, control=ANY_PORT,
                                  model=str(tiny_weights),
                                  device="cpu", precision="fp32", stride=2, max_batch=3,
                                  status_interval=0.2,
                                  events_db=str(tmp_path / "events.sqlite3")),
                   ScorerConfig(rule="area", threshold=1), EventConfig(open_frames=1))
    stop = threading.Event()
    thread = threading.Thread(target=det.run, args=(stop,))
    thread.start()
    sub = Subscriber(det.endpoints["publish"], TOPICS)
    push = push_socket(det.endpoints["bind"])
    try:
        wait_subscribed(sub, TOPICS, 30)   # overlays are drawn only once "overlay." is seen
        yield det, sub, push
    finally:
        push.close(linger=0)
        sub.close()
        _stop(stop, thread)


def _frames(clip, n):
    return [cv2.imread(str(p)) for p in list_frames(PED2 / "Test" / clip)[:n]]


def _collect_until_eos(sub, stream):
    return until_eos(sub, stream, 30)


def test_every_frame_of_every_clip_is_scored_once_and_bad_messages_are_dropped(running):
    det, sub, push = running
    seq = 0
    n = 25   # the ring holds 4 + 2*2 = 8 frames: it wraps around three times per clip
    for clip in ("Test001", "Test002"):
        for i, image in enumerate(_frames(clip, n)):
            push.send_multipart(encode_frame("cam", seq, 1.0 + seq, image, clip=clip, frame=i + 1))
            seq += 1
            if i == 10:
                push.send_multipart([b"{garbage", b""])
                bad = json.loads(encode_frame("cam", 0, 0.0, image)[0])
                push.send_multipart([json.dumps({**bad, "seq": 2**70}).encode(), b""])
    push.send_multipart(encode_eos("cam"))
    got = _collect_until_eos(sub, "cam")
    scores = [m.payload for m in got if m.topic == "score.cam"]
    assert [s["seq"] for s in scores] == list(range(2 * n))
    assert [(s["clip"], s["frame"]) for s in scores] == [
        (c, f) for c in ("Test001", "Test002") for f in range(1, n + 1)]
    overlays = [m for m in got if m.topic == "overlay.cam"]
    assert len(overlays) == 2 * n and all(m.jpeg[:2] == b"\xff\xd8" for m in overlays)
    image = cv2.imdecode(np.frombuffer(overlays[0].jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (240, 360, 3)
    alerts = [m.payload for m in got if m.topic == "alert.cam"]
    # random weights flag every frame: one event per clip, closed at each clip's end
    assert [a["type"] for a in alerts if a["type"] != "update"] == ["start", "end"] * 2
    assert alerts[-1]["end_seq"] == 2 * n - 1
    eos = got[-1].payload
    assert eos["scored"] == 2 * n and eos["received"] == 2 * n
    assert det.rejected["bad_json"] == 2 and det.rejected["bad_value"] == 2


def test_live_scores_equal_offline_scores(running, tiny_weights):
    """The detector's windows and scores are those of train.offline.score_clip."""
    det, sub, push = running
    frames = _frames("Test004", 23)
    for i, image in enumerate(frames):
        push.send_multipart(encode_frame("same", i, 1.0 + i, image))
    push.send_multipart(encode_eos("same"))
    live = [m.payload["scores"] for m in _collect_until_eos(sub, "same")
            if m.topic == "score.same"]
    net, meta = load_weights(tiny_weights)
    x = np.stack([meta.contract.preprocess(f) for f in frames])
    offline = score_clip(net, x, meta.window, 2, det.scorer, mx.cpu())
    assert len(live) == 23
    np.testing.assert_allclose([s["peak"] for s in live], offline["peak"], rtol=1e-4)
    np.testing.assert_array_equal([s["area"] for s in live], offline["area"])


def test_frames_that_change_size_are_dropped_and_counted(running):
    det, sub, push = running
    image = _frames("Test001", 1)[0]
    push.send_multipart(encode_frame("cam2", 0, 1.0, image))
    push.send_multipart(encode_frame("cam2", 1, 2.0, image[:100]))
    push.send_multipart(encode_eos("cam2"))
    _collect_until_eos(sub, "cam2")
    assert det.rejected["shape_changed"] == 1


def test_restarted_capture_starts_a_new_run(running):
    det, sub, push = running
    frames = _frames("Test005", 6)
    for seq in (0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4):       # the capture restarted after seq 5
        push.send_multipart(encode_frame("re", seq, 1.0, frames[seq]))
    push.send_multipart(encode_eos("re"))
    got = _collect_until_eos(sub, "re")
    seqs = [m.payload["seq"] for m in got if m.topic == "score.re"]
    assert seqs == [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4]
    assert got[-1].payload["dropped"] == 0


def test_only_loopback_endpoints_count_as_private():
    from stream.detector.loop import is_loopback
    for endpoint in ("tcp://127.0.0.1:5555", "tcp://localhost:1", "tcp://[::1]:5", "ipc:///tmp/x",
                     "inproc://a"):
        assert is_loopback(endpoint), endpoint
    for endpoint in ("tcp://*:5555", "tcp://0.0.0.0:5555", "tcp://10.0.0.2:5555", "tcp://eth0:1"):
        assert not is_loopback(endpoint), endpoint


def test_flood_of_stream_ids_is_bounded_and_others_keep_scoring(tiny_weights, tmp_path):
    det, bind, publish, stop, thread = _run_detector(tiny_weights, tmp_path, max_streams=3,
                                                     events_db="")
    image = _frames("Test001", 1)[0]
    try:
        with Subscriber(publish, ["score.real", "eos.real", "status"]) as sub:
            wait_subscribed(sub, ["score.real", "eos.real"])
            push = push_socket(bind)
            for seq in range(12):
                push.send_multipart(encode_frame("real", seq, 2.0 + seq, image))
                if seq == 3:
                    for i in range(200):                      # 200 ids, 1 frame each
                        push.send_multipart(encode_frame(f"junk{i}", 0, 1.0, image))
            push.send_multipart(encode_eos("real"))
            got = _collect_until_eos(sub, "real")
            push.close(linger=0)
        assert [m.payload["seq"] for m in got if m.topic == "score.real"] == list(range(12))
        assert det.rejected["too_many_streams"] == 198
        assert len(det.streams) <= 3
    finally:
        _stop(stop, thread)


def _vtest_frames(n):
    cap = cv2.VideoCapture(str(VTEST))
    frames = [cap.read()[1] for _ in range(n)]
    cap.release()
    assert all(f is not None for f in frames)
    return frames


@pytest.mark.slow
def test_stuck_subscriber_loses_messages_at_the_hwm_and_scoring_goes_on(tiny_weights, tmp_path):
    """A subscriber that subscribes to everything and never reads: once its queue at the
    publisher (publish_hwm messages) and the TCP buffers are full, its messages are dropped,
    while the detector keeps scoring and a reading subscriber gets every frame's score."""
    n = 240   # ~55 kB overlays: 13 MB, several times what the buffers can hold (4 MiB
    # tcp_wmem max on a default Linux) beside 32 messages queued at the publisher
    det, bind, publish, stop, thread = _run_detector(tiny_weights, tmp_path, stride=4,
                                                     max_batch=2, publish_hwm=32, events_db="")
    stuck = zmq.Context.instance().socket(zmq.SUB)
    stuck.setsockopt(zmq.RCVHWM, 1)
    stuck.setsockopt(zmq.RCVBUF, 4096)
    stuck.setsockopt(zmq.LINGER, 0)
    stuck.setsockopt(zmq.SUBSCRIBE, b"")
    stuck.connect(publish)
    try:
        with Subscriber(publish, ["score.real", "eos.real", "status"]) as sub:
            # "" is the stuck one: from now on the publisher queues everything for it
            wait_subscribed(sub, ["", "score.real", "eos.real"])
            push = push_socket(bind)
            for seq, image in enumerate(_vtest_frames(n)):
                push.send_multipart(encode_frame("real", seq, 1.0 + seq, image))
            push.send_multipart(encode_eos("real"))
            got = _collect_until_eos(sub, "real")
            push.close(linger=0)
            assert [m.payload["seq"] for m in got if m.topic == "score.real"] == list(range(n))
            assert got[-1].payload["scored"] == n
        # Now it reads what reached it: everything up to the moment it filled up.
        seqs, topics, quiet_since = [], set(), time.monotonic()
        while time.monotonic() - quiet_since < 2.0:
            if not stuck.poll(200):
                continue
            parts = stuck.recv_multipart()
            if parts[0] == b"status":     # still published every 0.2 s
                continue
            quiet_since = time.monotonic()
            topics.add(parts[0].decode())
            if parts[0] == b"score.real":
                seqs.append(json.loads(parts[1])["seq"])
        assert {"score.real", "overlay.real"} <= topics     # it was subscribed and served
        assert seqs == sorted(seqs) and 0 < len(seqs) < n // 2, len(seqs)
        assert n - 1 not in seqs and "eos.real" not in topics   # the rest was dropped
    finally:
        stuck.close(linger=0)
        _stop(stop, thread)


def test_binding_beyond_loopback_without_curve_warns(tiny_weights, caplog):
    det = Detector(DetectorConfig(bind="tcp://0.0.0.0:*", publish=ANY_PORT,
                                  model=str(tiny_weights), device="cpu",
                                            precision="fp32", stride=2, events_db=""))
    det.close()
    assert "reachable beyond this machine and unauthenticated" in caplog.text


def _run_detector(tiny_weights, tmp_path, **config):
    config = {"stride": 2, "events_db": str(tmp_path / "e.db"), **config}
    det = Detector(DetectorConfig(bind=ANY_PORT, publish=ANY_PORT, control=ANY_PORT,
                                  model=str(tiny_weights),
                                  device="cpu", precision="fp32", status_interval=0.2, **config),
                   ScorerConfig(rule="area", threshold=1), EventConfig(open_frames=1))
    stop = threading.Event()
    thread = threading.Thread(target=det.run, args=(stop,))
    thread.start()
    return det, det.endpoints["bind"], det.endpoints["publish"], stop, thread


def test_idle_stream_is_ended_and_reported_offline(tiny_weights, tmp_path):
    det, bind, publish, stop, thread = _run_detector(tiny_weights, tmp_path, idle_timeout=1.0,
                                                     offline_after=0.5)
    try:
        with Subscriber(publish, ["alert.", "eos.", "status"]) as sub:
            wait_subscribed(sub, ["alert.", "eos."])
            push = push_socket(bind)
            for seq, image in enumerate(_frames("Test001", 6)):   # then the camera dies
                push.send_multipart(encode_frame("dead", seq, 1.0 + seq, image))
            got = _collect_until_eos(sub, "dead")
            assert [m.payload["type"] for m in got if m.topic == "alert.dead"][-1] == "end"
            wait_for_status(sub, lambda s: s["streams"].get("dead", {}).get("online") is False,
                            10, "the ended stream still reported offline")
            push.close(linger=0)
    finally:
        _stop(stop, thread)


def test_oversized_messages_are_cut_off_and_bad_ones_logged_sparingly(tiny_weights, tmp_path,
                                                                      caplog):
    det, bind, publish, stop, thread = _run_detector(tiny_weights, tmp_path, max_message_mb=1)
    try:
        with Subscriber(publish, ["score.ok", "eos.ok", "status"]) as sub:
            wait_subscribed(sub, ["score.ok", "eos.ok"])
            big = push_socket(bind)
            big.send_multipart(encode_frame("big", 0, 1.0, np.zeros((800, 1000, 3), np.uint8)))
            ok = push_socket(bind)
            for _ in range(50):
                ok.send_multipart([b"not json", b""])
            frames = _frames("Test001", 6)
            for seq, image in enumerate(frames):
                ok.send_multipart(encode_frame("ok", seq, 1.0 + seq, image))
            ok.send_multipart(encode_eos("ok"))
            got = _collect_until_eos(sub, "ok")
            assert len([m for m in got if m.topic == "score.ok"]) == 6
            big.close(linger=0)
            ok.close(linger=0)
        assert "big" not in det.streams and det.rejected["bad_json"] == 50
        logged = [r for r in caplog.records if "bad_json" in r.getMessage()]
        assert len(logged) == 3
    finally:
        _stop(stop, thread)


def test_status_counts_inference_events_reconnects_and_the_store_keeps_the_peak(running,
                                                                                tmp_path):
    from stream.store import EventStore
    det, sub, push = running
    for i, image in enumerate(_frames("Test002", 12)):
        # a live capture reporting its reconnections; then it is restarted and counts anew
        reconnects = [0, 0, 1, 1, 3, 3, 3, 3, 0, 0, 1, 1][i]
        push.send_multipart(encode_frame("snap", i, 1.0 + i, image, reconnects=reconnects))
    seen = []

    def scored_status():
        m = sub.recv()
        if m is not None:
            seen.append(m)
            return m.topic == "status" and m.payload["streams"].get("snap", {}).get(
                "scored") == 12 and m.payload
    status = wait_for(scored_status, 30, "status with every frame scored")
    snap = status["streams"]["snap"]
    assert snap["reconnects"] == 3 + 1 and snap["events"] == 1 and snap["event_open"]
    hist = status["inference_s"]
    assert hist["count"] >= 2 and hist["counts"][-1] <= hist["count"] and hist["sum"] > 0
    assert hist["counts"] == sorted(hist["counts"]) and len(hist["counts"]) == len(hist["bounds"])
    assert status["status_interval"] == 0.2
    push.send_multipart(encode_eos("snap"))
    got = seen + _collect_until_eos(sub, "snap")
    end = [m.payload for m in got if m.topic == "alert.snap"][-1]
    overlays = {m.payload["seq"]: m.jpeg for m in got if m.topic == "overlay.snap"}
    with EventStore(tmp_path / "events.sqlite3", readonly=True) as store:
        seq, jpeg = store.snapshot(end["id"])
    assert end["type"] == "end" and seq == end["peak_seq"]
    assert jpeg == overlays[seq]          # the very overlay subscribers saw at the peak


@pytest.mark.parametrize("precision", ["bf16", "auto"])
def test_a_one_frame_window_is_refused_with_what_to_do(tmp_path, precision):
    """Refused before any network is built: bf16 would fail first otherwise (its
    conversion asserts on a one-frame window; without AVX-512 it cannot run at all)."""
    from tests.conftest import TINY_ARGS, make_weights
    path = make_weights(tmp_path / "one", model_args={**TINY_ARGS, "window": 1})
    with pytest.raises(ValueError, match="window of 1 frame: scoring needs at least 2"):
        Detector(DetectorConfig(bind=ANY_PORT, publish=ANY_PORT, control=ANY_PORT,
                                  model=str(path),
                                precision=precision, events_db=""))


def test_a_streams_smoother_starts_afresh_at_a_cut(tiny_weights):
    from stream.detector.events import EventTracker
    from stream.detector.runtime import ModelRuntime
    from stream.detector.state import StreamState
    runtime = ModelRuntime(tiny_weights, DetectorConfig(device="cpu", precision="fp32"),
                           ScorerConfig(smooth=3, threshold=1.0))
    state = StreamState("s", (8, 8), runtime, EventTracker("s", 1.0))
    first = state.segment
    assert [state.smooth(first, v) for v in (3, 6, 9)] == [3, 4.5, 6]
    state.reset()                                  # a cut: windows after it carry a new segment
    assert state.segment == first + 1
    assert state.smooth(first + 1, 1) == 1
    assert state.smooth(first + 1, 3) == 2
    assert np.isnan(state.smooth(first + 1, float("nan")))   # not pushed
    assert state.smooth(first + 1, 5) == 3
