"""Two cameras on two models in one detector, live through real processes: a walkway
stream on the STAE and a conveyor stream of casting parts on a per-frame plug-in family
(tests/plugins/frame_ae.py, window 1)."""


import pytest

from stream.wire.subscriber import Subscriber
from tests.conftest import DATA, PED2, run_models_live, wait_for
from tests.plugins.frame_ae import make_frame_weights

CASTING = DATA / "casting" / "train" / "ok_front"


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_two_streams_on_two_models_in_one_detector(tiny_weights, tmp_path):
    parts = tmp_path / "parts"       # 40 real casting images, as a conveyor camera sees them
    parts.mkdir()
    for image in sorted(CASTING.glob("*.jpeg"))[:40]:
        (parts / image.name).symlink_to(image)
    frame_weights = make_frame_weights(tmp_path / "frame_ae", threshold=1e9)
    scores, status = run_models_live(
        tmp_path, tiny_weights,
        [{"id": "walkway", "source": str(PED2 / "Test" / "Test001")},
         {"id": "conveyor", "source": str(parts), "model": str(frame_weights)}],
        detector={"plugins": ["tests.plugins.frame_ae"]}, timeout=120)
    walk, conveyor = scores["walkway"], scores["conveyor"]
    # Each stream was scored by its own model: the STAE's calibrated rule (area) and the
    # plug-in's (error, with no motion: a one-frame window has no change).
    assert {s["rule"] for s in walk} == {"area"} and {s["threshold"] for s in walk} == {30}
    assert {s["rule"] for s in conveyor} == {"error"}
    assert {s["threshold"] for s in conveyor} == {1e9}
    assert all(s["scores"]["motion"] == 0 and s["scores"]["error"] > 0 for s in conveyor)
    assert not any(s["anomalous"] for s in conveyor)
    for stream in scores.values():         # no frame scored twice
        assert len({(s["seq"], s["ts"]) for s in stream}) == len(stream)
    models = {m["model"]: m for m in status["models"]}
    assert set(models) == {"stae", "test_frame_ae"}
    assert models["test_frame_ae"]["window"] == 1 and models["stae"]["window"] == 4
    assert status["streams"]["conveyor"]["model"] == str(frame_weights)


@pytest.mark.timeout(120)
def test_a_clip_ends_before_the_next_one_starts_while_other_streams_end(tmp_path):
    """Stream ends and cuts are emitted asynchronously, batched with other streams'
    windows: on a per-frame model (no full-network window to keep them apart) each
    clip's event still ends before any frame of the next clip is emitted, and a stream's
    eos comes after all its scores."""
    import threading

    import cv2

    from models.scoring import ScorerConfig
    from stream.capture.frames import list_frames
    from stream.detector.config import DetectorConfig
    from stream.detector.events import EventConfig
    from stream.detector.loop import Detector
    from stream.wire.protocol import encode_eos, encode_frame
    from tests.conftest import ANY_PORT, push_socket

    weights = make_frame_weights(tmp_path / "frame_ae", threshold=1e9)
    det = Detector(DetectorConfig(bind=ANY_PORT, publish=ANY_PORT, control=ANY_PORT,
                                  model=str(weights),
                                  device="cpu", precision="fp32", max_batch=4,
                                  status_interval=0.2, events_db="",
                                  plugins=("tests.plugins.frame_ae",)),
                   ScorerConfig(rule="error", threshold=0.0), EventConfig(open_frames=1))
    stop_event = threading.Event()
    thread = threading.Thread(target=det.run, args=(stop_event,))
    thread.start()
    sub = Subscriber(det.endpoints["publish"], ["score.", "alert.", "eos."])
    push = push_socket(det.endpoints["bind"])
    try:
        wait_for(lambda: sub.recv(50) is None, 5, "the subscription")   # joined, nothing yet
        images = [cv2.imread(str(p)) for p in list_frames(PED2 / "Test" / "Test001")[:12]]
        seq = dict.fromkeys("ABC", 0)
        for rnd in range(3):
            for i, image in enumerate(images):
                for stream in "ABC":
                    clip = f"{stream}{rnd}"
                    push.send_multipart(encode_frame(stream, seq[stream], 1.0, image,
                                                     clip=clip, frame=i + 1))
                    seq[stream] += 1
                if i == 6:
                    push.send_multipart(encode_eos("C"))    # another stream ends mid-clip
                    seq["C"] = 0
        for stream in "AB":
            push.send_multipart(encode_eos(stream))
        got = []

        def all_ended():
            m = sub.recv()
            if m is not None:
                got.append(m)
            return sum(m.topic in ("eos.A", "eos.B") for m in got) == 2
        wait_for(all_ended, 60, "eos of A and B")
    finally:
        push.close(linger=0)
        sub.close()
        stop_event.set()
        thread.join(15)
    for stream in "AB":
        mine = [m for m in got if m.topic.endswith(f".{stream}")]
        assert mine[-1].topic == f"eos.{stream}"
        open_clip = None
        for m in mine:
            if m.topic.startswith("alert.") and m.payload["type"] == "start":
                open_clip = m.payload["clip"]
            elif m.topic.startswith("alert.") and m.payload["type"] == "end":
                open_clip = None
            elif m.topic.startswith("score."):
                # a frame is emitted only while no other clip's event is open
                assert open_clip in (None, m.payload["clip"]), (open_clip, m.payload)
        clips = [m.payload["clip"] for m in mine if m.topic.startswith("score.")]
        assert clips == [f"{stream}{r}" for r in range(3) for _ in range(12)]
