"""Admission: configured cameras always get in, and no flood of stream ids locks a new
camera out (unit rules, then a real detector on loopback with real Ped2 frames)."""

import threading
import time
from dataclasses import dataclass

import pytest
import zmq

from models.scoring import ScorerConfig
from stream.detector.admission import Admission
from stream.detector.config import DetectorConfig
from stream.detector.events import EventConfig
from stream.detector.loop import Detector
from stream.wire.protocol import ProtocolError, encode_eos, encode_frame
from stream.wire.subscriber import Subscriber
from tests.conftest import ANY_PORT, wait_for
from tests.stream.test_detector import _frames


@dataclass
class Seen:
    stream: str
    last_seen: float
    received: int
    nbytes: int = 100


def test_a_one_frame_flood_gives_way_to_a_stream_that_keeps_sending():
    adm = Admission(max_streams=3, probation=1.0, window=4)
    tracked = {f"f{i}": Seen(f"f{i}", last_seen=10.0, received=1) for i in range(3)}
    # Full, and the flooders were quiet for less than the probation: refused.
    with pytest.raises(ProtocolError) as err:
        adm.admit("new", 100, tracked, now=10.5)
    assert err.value.reason == "too_many_streams"
    # Quiet long enough, but a one-off id (first knock) never evicts anyone...
    with pytest.raises(ProtocolError):
        adm.admit("oneoff", 100, tracked, now=11.5)
    # ...a stream that keeps sending (its second knock) takes the quietest slot.
    tracked["f1"].last_seen = 9.0
    assert adm.admit("new", 100, tracked, now=11.5) == "f1"


def test_streams_off_probation_and_configured_streams_are_never_evicted():
    adm = Admission(configured=["cam"], max_streams=2, probation=0.5, window=4)
    tracked = {s: Seen(s, last_seen=0.0, received=10) for s in ("a", "b")}
    for _ in range(3):
        with pytest.raises(ProtocolError, match="2 unlisted streams already tracked"):
            adm.admit("c", 100, tracked, now=100.0)
    tracked["cam"] = Seen("cam", 0.0, 1)
    assert adm.admit("cam", 100, tracked, now=100.0) is None   # reserved capacity


def test_only_configured_streams_when_unknown_ones_are_not_allowed():
    adm = Admission(configured=["cam"], allow_unknown=False)
    assert adm.admit("cam", 1, {}) is None
    with pytest.raises(ProtocolError, match="add it to streams: or detector.allow") as err:
        adm.admit("other", 1, {})
    assert err.value.reason == "unknown_stream"


def test_a_client_key_sends_only_its_streams():
    adm = Admission(key_streams={"KEY1": ["cam1"], "KEY2": ["cam2"]})
    adm.check_sender("cam1", "KEY1")
    adm.check_sender("other", "KEY3")          # an unbound key: unlisted ids only
    for stream, key in (("cam1", "KEY2"), ("cam1", None), ("other", "KEY1")):
        with pytest.raises(ProtocolError) as err:
            adm.check_sender(stream, key)
        assert err.value.reason == "stream_not_allowed"
    assert adm.admit("cam2", 1, {}) is None    # bound streams count as configured


@dataclass(frozen=True)
class Entry:
    id: str
    model: str = ""


def _detector(weights, tmp_path, curve=None, **config):
    det = Detector(DetectorConfig(bind=ANY_PORT, publish=ANY_PORT, control=ANY_PORT,
                                  model=str(weights),
                                  device="cpu",
                                  precision="fp32", stride=2, max_batch=4,
                                  status_interval=0.2, events_db="", **config),
                   ScorerConfig(rule="area", threshold=1), EventConfig(),
                   streams=[Entry("configured")])
    stop = threading.Event()
    thread = threading.Thread(target=det.run, args=(stop,))
    thread.start()
    sub = Subscriber(det.endpoints["publish"], ["score.", "status"], curve=curve)
    wait_for(lambda: (m := sub.recv()) is not None and m.topic == "status", 10, "status")
    push = zmq.Context.instance().socket(zmq.PUSH)
    push.connect(det.endpoints["bind"])
    return det, sub, push, stop, thread


def _close(sub, push, stop, thread):
    push.close(linger=0)
    sub.close()
    stop.set()
    thread.join(15)
    assert not thread.is_alive()


@pytest.mark.timeout(120)
def test_after_a_flood_of_300_ids_a_new_camera_is_scored_within_2_s(tiny_weights, tmp_path):
    det, sub, push, stop, thread = _detector(tiny_weights, tmp_path)
    try:
        image = _frames("Test001", 1)[0]
        for i in range(300):
            push.send_multipart(encode_frame(f"flood{i}", 0, time.time(), image))
        clip = _frames("Test002", 40)
        sent = {}

        def camera():   # a real clip at 10 fps on a new id, right after the flood
            for seq, frame in enumerate(clip):
                sent[seq] = time.time()
                push.send_multipart(encode_frame("newcam", seq, sent[seq], frame))
                time.sleep(0.1)
        sender = threading.Thread(target=camera)
        sender.start()
        scored = []

        def newcam_scored():
            m = sub.recv()
            if m is not None and m.topic == "score.newcam":
                scored.append(m.payload["seq"])
            return len(scored) >= 5
        wait_for(newcam_scored, 30, "newcam's frames scored")
        sender.join(10)
        first = min(scored)
        assert sent[first] - sent[0] <= 2.0, (first, sent[first] - sent[0])
        assert det.rejected["too_many_streams"] >= 300 - 64
        assert det.rejected["evicted"] >= 1
        assert len(det.streams) <= 64
    finally:
        _close(sub, push, stop, thread)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_configured_stream_is_admitted_while_64_unknown_ones_are_live(tiny_weights, tmp_path):
    det, sub, push, stop, thread = _detector(tiny_weights, tmp_path)
    try:
        frames = _frames("Test003", 6)
        for seq, frame in enumerate(frames):      # 64 unlisted streams, all sending
            for i in range(64):
                push.send_multipart(encode_frame(f"live{i}", seq, time.time(), frame))
        wait_for(lambda: len(det.streams) == 64, 30, "64 live streams tracked")
        for seq, frame in enumerate(frames):
            push.send_multipart(encode_frame("configured", seq, time.time(), frame))
            push.send_multipart(encode_frame("unlisted65", seq, time.time(), frame))
        push.send_multipart(encode_eos("configured"))
        got = []

        def configured_scored():
            m = sub.recv()
            if m is not None and m.topic == "score.configured":
                got.append(m.payload["seq"])
            return len(got) == len(frames)
        wait_for(configured_scored, 30, "the configured stream's frames scored")
        assert got == list(range(len(frames)))
        assert "unlisted65" not in det.streams
        assert det.rejected["too_many_streams"] >= len(frames)
        assert det.rejected["evicted"] == 0        # live streams are never evicted
    finally:
        _close(sub, push, stop, thread)




@pytest.mark.timeout(120)
def test_with_curve_a_client_key_is_bound_to_its_stream_ids(tiny_weights, tmp_path):
    import shutil

    from stream.wire.security import CurveClient, make_keys
    keys, allowed = tmp_path / "keys", tmp_path / "allowed"
    make_keys(keys, ["server", "cama", "other"])
    allowed.mkdir()
    for name in ("cama", "other"):
        shutil.copy(keys / f"{name}.key", allowed)
    server = str(keys / "server.key")
    det, sub, push, stop, thread = _detector(
        tiny_weights, tmp_path, curve=CurveClient(str(keys / "other.key_secret"), server),
        curve_secret_key=str(keys / "server.key_secret"), curve_allowed=str(allowed),
        curve_streams={"cama": ["cam-a"]})
    sub.close()
    push.close(linger=0)
    ctx = zmq.Context.instance()
    pushes = {}
    for name in ("cama", "other"):
        pushes[name] = ctx.socket(zmq.PUSH)
        CurveClient(str(keys / f"{name}.key_secret"), server).apply(pushes[name])
        pushes[name].connect(det.endpoints["bind"])
    try:
        frames = _frames("Test001", 5)
        for seq, frame in enumerate(frames):
            pushes["other"].send_multipart(encode_frame("cam-a", seq, 1.0, frame))  # not its id
            pushes["cama"].send_multipart(encode_frame("cam-b", seq, 1.0, frame))   # nor this
            pushes["cama"].send_multipart(encode_frame("cam-a", seq, 1.0, frame))   # its own
        wait_for(lambda: det.rejected["stream_not_allowed"] == 2 * len(frames), 30,
                 "both wrong senders refused")
        wait_for(lambda: "cam-a" in det.streams and det.streams["cam-a"].received == 5, 30,
                 "cam-a's frames taken in")
        assert "cam-b" not in det.streams
    finally:
        for p in pushes.values():
            p.close(linger=0)
        stop.set()
        thread.join(15)
