"""The detector in-process, with real ZeroMQ sockets on loopback and real frames."""

import threading

import cv2
import pytest
import zmq

from stream.detector import Detector, DetectorConfig, EventConfig, ScorerConfig
from stream.frames import list_frames
from stream.protocol import encode_eos, encode_frame
from stream.subscriber import Subscriber
from tests.conftest import PED2, free_port, wait_for


@pytest.fixture
def running(tiny_weights):
    bind, publish = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    det = Detector(DetectorConfig(bind=bind, publish=publish, model=str(tiny_weights),
                                  device="cpu", stride=2, max_batch=3, status_interval=0.2),
                   ScorerConfig(rule="area", min_area=1), EventConfig(open_frames=1))
    stop = threading.Event()
    thread = threading.Thread(target=det.run, args=(stop,))
    thread.start()
    sub = Subscriber(publish, ["score.", "eos.", "status", "alert.", "overlay."])
    wait_for(lambda: (m := sub.recv()) is not None and m.topic == "status", 10, "status")
    push = zmq.Context.instance().socket(zmq.PUSH)
    push.connect(bind)
    yield det, sub, push
    push.close(linger=0)
    sub.close()
    stop.set()
    thread.join(10)


def _frames(clip, n):
    return [cv2.imread(str(p)) for p in list_frames(PED2 / "Test" / clip)[:n]]


def _collect_until_eos(sub, stream):
    got = []
    def step():
        m = sub.recv()
        if m is not None:
            got.append(m)
            return m.topic == f"eos.{stream}"
        return False
    wait_for(step, 30, f"eos.{stream}")
    return got


def test_every_frame_of_every_clip_is_scored_once_and_bad_messages_are_dropped(running):
    det, sub, push = running
    seq = 0
    for clip in ("Test001", "Test002"):
        for i, image in enumerate(_frames(clip, 7)):
            push.send_multipart(encode_frame("cam", seq, 1.0 + seq, image, clip=clip, frame=i + 1))
            seq += 1
        push.send_multipart([b"{garbage", b""])
    push.send_multipart(encode_eos("cam"))
    got = _collect_until_eos(sub, "cam")
    scores = [m.payload for m in got if m.topic == "score.cam"]
    assert sorted(s["seq"] for s in scores) == list(range(14))
    assert [s["seq"] for s in scores] == sorted(s["seq"] for s in scores)
    assert {(s["clip"], s["frame"]) for s in scores} == {
        (c, f) for c in ("Test001", "Test002") for f in range(1, 8)}
    overlays = [m for m in got if m.topic == "overlay.cam"]
    assert len(overlays) == 14 and all(m.jpeg[:2] == b"\xff\xd8" for m in overlays)
    image = cv2.imdecode(__import__("numpy").frombuffer(overlays[0].jpeg, "uint8"), 1)
    assert image.shape == (240, 360, 3)
    alerts = [m.payload for m in got if m.topic == "alert.cam"]
    # random weights flag every frame: one event per clip, closed at each clip's end
    assert [a["type"] for a in alerts if a["type"] != "update"] == ["start", "end"] * 2
    assert alerts[-1]["end_seq"] == 13
    eos = got[-1].payload
    assert eos["scored"] == 14 and eos["received"] == 14
    assert det.rejected["bad_json"] == 2


def test_frames_that_change_size_are_dropped_and_counted(running):
    det, sub, push = running
    image = _frames("Test001", 1)[0]
    push.send_multipart(encode_frame("cam2", 0, 1.0, image))
    push.send_multipart(encode_frame("cam2", 1, 2.0, image[:100]))
    push.send_multipart(encode_eos("cam2"))
    _collect_until_eos(sub, "cam2")
    assert det.rejected["shape_changed"] == 1
