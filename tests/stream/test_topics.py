"""Typed topic messages: round trips, the bytes the detector publishes, clear errors, and
the decoder on a real detector's messages."""

import asyncio
import dataclasses
import json
import subprocess

import cv2
import pytest
import zmq

from models.scoring import RULES
from stream.capture.frames import list_frames
from stream.store import recovered_end
from stream.wire.protocol import encode_eos, encode_frame
from stream.wire.subscriber import AsyncSubscriber, Subscriber
from stream.wire.topics import (
    AlertMessage,
    EosMessage,
    IdleStream,
    InferenceTimes,
    InferenceTotals,
    OverlayMessage,
    ScoreMessage,
    Scores,
    StatusMessage,
    StreamStatus,
    TopicError,
    decode_topic,
)
from tests.conftest import ANY_PORT, PED2, start_detector, stop, wait_for

JPEG = b"\xff\xd8\xff\xe0fake jpeg"

# Payloads shaped exactly as stream/detector/loop.py and stream/detector/events.py build
# them today (key order included), without "v".
SCORE = {"stream": "cam", "seq": 7, "ts": 1700000000.25, "clip": "Test001", "frame": 8,
         "scores": {"error": 3.5, "area": 12, "peak": 40.5, "motion": 22.75, "score": 22.75},
         "threshold": 20.0, "rule": "motion", "anomalous": True, "latency_ms": 81.5}
OVERLAY = {"stream": "cam", "seq": 7, "ts": 1700000000.25, "clip": None, "frame": None,
           "anomalous": True, "score": 22.75, "boxes": [[10, 20, 30, 40]]}
ALERT = {"type": "start", "id": "ab12", "stream": "cam", "start_seq": 5,
         "start_ts": 1700000000.0, "end_seq": None, "end_ts": None, "seq": 7,
         "ts": 1700000000.25, "score": 22.75, "peak_score": 25.0, "peak_seq": 6,
         "threshold": 20.0, "frames": 3, "boxes": [[10, 20, 30, 40]], "clip": None,
         "frame": None}
EOS = {"stream": "cam", "received": 180, "scored": 178, "dropped": 2, "overrun": 0,
       "unscored": 0}
STATUS = {"ts": 1700000001.0, "uptime_s": 12.5,
          "streams": {"cam": {"received": 180, "scored": 178, "dropped": 2, "overrun": 0,
                              "fps": 9.98, "queue": 2, "event_open": True, "events": 1,
                              "reconnects": 0, "online": True, "clip": "Test001"},
                      "gone": {"online": False, "last_seen": 1699999990.5,
                               "idle_ended": True}},
          "rejected": {"bad_json": 2}, "subscriptions": ["alert.", "status"],
          "rule": "motion", "threshold": 20.0, "status_interval": 1.0,
          "inference_s": {"bounds": [0.005, 0.01], "counts": [0, 3], "sum": 0.02, "count": 3},
          "precision": "fp32", "inference": {"seconds": 0.021, "frames": 30}}
PUBLISHED = [("score.cam", SCORE, ScoreMessage), ("overlay.cam", OVERLAY, OverlayMessage),
             ("alert.cam", ALERT, AlertMessage), ("eos.cam", EOS, EosMessage),
             ("status", STATUS, StatusMessage)]


def _parts(topic: str, payload: dict) -> list[bytes]:
    parts = [topic.encode(), json.dumps(payload).encode()]
    return parts + [JPEG] if topic.startswith("overlay.") else parts


@pytest.mark.parametrize("topic, payload, cls", PUBLISHED)
def test_todays_payloads_decode_and_encode_to_the_same_bytes_plus_the_version(topic, payload,
                                                                              cls):
    msg = decode_topic(_parts(topic, payload))
    assert type(msg) is cls and msg.topic == topic
    assert msg.to_json() == json.dumps({"v": 1, **payload})
    assert msg.to_parts() == _parts(topic, {"v": 1, **payload})
    assert decode_topic(msg.to_parts()) == msg                  # with "v" as without
    assert cls.from_dict(msg.to_dict(), **({"jpeg": JPEG} if cls is OverlayMessage else {})) \
        == msg


def test_every_class_round_trips_from_its_constructor():
    scores = Scores(error=1.0, area=2, peak=3.0, motion=4.0, score=4.0)
    relative = Scores(error=1.0, area=2, peak=3.0, motion=0.0, score=2.5, relative=2.5)
    messages = [
        ScoreMessage(stream="a", seq=1, ts=2.0, scores=scores, threshold=3.0, rule="motion",
                     anomalous=True, latency_ms=4.0),
        OverlayMessage(stream="a", seq=1, ts=2.0, clip="c", frame=1, anomalous=False,
                       score=1.0, boxes=[], jpeg=JPEG),
        AlertMessage(type="end", id="ff", stream="a", start_seq=1, start_ts=1.0, end_seq=3,
                     end_ts=3.0, seq=3, ts=3.0, score=9.0, peak_score=9.5, peak_seq=2,
                     threshold=5.0, frames=3, boxes=[[1, 2, 3, 4]], recovered=True),
        EosMessage(stream="a", received=3, scored=3, dropped=0, overrun=0, unscored=0),
        StatusMessage(ts=1.0, uptime_s=2.0, rule="motion", threshold=5.0, status_interval=1.0,
                      rejected={}, streams={
                          "a": StreamStatus(received=1, scored=1, dropped=0, overrun=0,
                                            fps=1.0, queue=0, event_open=False, events=0,
                                            reconnects=0, online=True),
                          "b": IdleStream(online=False, last_seen=0.5, idle_ended=True)},
                      inference_s=InferenceTimes(bounds=[0.1], counts=[1], sum=0.05, count=1),
                      inference=InferenceTotals(seconds=0.05, frames=10), precision="int8",
                      subscriptions=["status"]),
        ScoreMessage(stream="a", seq=1, ts=2.0, scores=relative, threshold=2.0,
                     rule="relative", anomalous=True, latency_ms=4.0),
    ]
    for msg in messages:
        parts = msg.to_parts()
        assert json.loads(parts[1])["v"] == 1 and next(iter(json.loads(parts[1]))) == "v"
        assert decode_topic(parts) == msg
    assert json.loads(messages[2].to_json())["recovered"] is True
    assert messages[0].to_dict()["clip"] is None             # null, never left out
    assert "relative" not in messages[0].to_dict()["scores"]   # no spread map: left out
    assert messages[-1].to_dict()["scores"]["relative"] == 2.5


def test_optional_fields_are_left_out_unless_set_and_extra_fields_are_ignored():
    bare = {k: v for k, v in STATUS.items()
            if k not in ("precision", "inference", "inference_s", "subscriptions")}
    status = decode_topic(_parts("status", bare))
    assert status.precision is None and status.inference is None and status.subscriptions is None
    assert status.to_json() == json.dumps({"v": 1, **bare})
    assert isinstance(status.streams["gone"], IdleStream)
    assert isinstance(status.streams["cam"], StreamStatus)
    alert = decode_topic(_parts("alert.cam", ALERT))
    assert alert.recovered is False and "recovered" not in alert.to_dict()
    newer = {**SCORE, "v": 1, "family": "stae", "scores": {**SCORE["scores"], "ssim": 0.9}}
    msg = decode_topic(_parts("score.cam", newer))             # a newer detector's additions
    assert msg == decode_topic(_parts("score.cam", SCORE))
    no_clip = {k: v for k, v in SCORE.items() if k not in ("clip", "frame")}
    assert decode_topic(_parts("score.cam", no_clip)).clip is None


def test_scores_carry_every_rule_and_the_score():
    assert {f.name for f in dataclasses.fields(Scores)} == {*RULES, "score"}


def _without(payload: dict, key: str) -> dict:
    return {k: v for k, v in payload.items() if k != key}


@pytest.mark.parametrize("parts, match", [
    ([b"frames.cam", b"{}"], r"unknown topic 'frames.cam': expected alert.<stream>, "
                             r"score.<stream>, overlay.<stream>, eos.<stream> or status"),
    ([b"status.cam", b"{}"], "unknown topic 'status.cam'"),
    ([b"score", b"{}"], "unknown topic 'score'"),
    ([b"score.a/b", b"{}"], r"stream id 'a/b' is invalid"),
    ([b"\xff\xfe", b"{}"], "is not UTF-8"),
    ([], "an empty message"),
    ([b"score.cam", b"{not json"], r"score.cam: the payload is not JSON"),
    ([b"score.cam", b"[1, 2]"], r"score.cam: the payload must be a JSON object, got \[1, 2\]"),
    (_parts("score.cam", _without(SCORE, "seq")), r"score.cam: missing field 'seq'"),
    (_parts("score.cam", {**SCORE, "scores": _without(SCORE["scores"], "motion")}),
     r"score.cam: missing field 'scores.motion'"),
    (_parts("status", {**STATUS, "streams": {"cam": _without(STATUS["streams"]["cam"],
                                                             "queue")}}),
     r"status: missing field 'streams.cam.queue'"),
    (_parts("score.cam", {**SCORE, "v": 2}),
     r"score.cam: message version 2 is not 1, the one this vadstream reads"),
    (_parts("eos.cam", {**EOS, "v": "1"}), r"eos.cam: message version \"1\" is not 1"),
    (_parts("score.cam", {**SCORE, "seq": "7"}),
     r"score.cam: field 'seq' must be an integer, got \"7\""),
    (_parts("score.cam", {**SCORE, "anomalous": 1}),
     r"field 'anomalous' must be true or false, got 1"),
    (_parts("score.cam", {**SCORE, "ts": None}), r"field 'ts' must be a number, got null"),
    (_parts("alert.cam", {**ALERT, "boxes": [[1, 2, "x", 4]]}),
     r"alert.cam: field 'boxes\[0\]\[2\]' must be an integer"),
    (_parts("alert.cam", {**ALERT, "type": "begin"}),
     r"alert.cam: alert type 'begin' is not one of start, update, end"),
    (_parts("score.cam", {**SCORE, "stream": "other"}),
     r"score.cam: the payload's stream 'other' is not the topic's 'cam'"),
    ([b"overlay.cam", json.dumps(OVERLAY).encode()],
     r"overlay.cam: expected 3 parts \[topic, JSON header, JPEG\], got 2"),
    ([b"overlay.cam", json.dumps(OVERLAY).encode(), b"PNG"],
     "overlay.cam: the third part is not a JPEG"),
    ([b"eos.cam", json.dumps(EOS).encode(), JPEG], r"eos.cam: expected 2 parts \[topic, JSON\]"),
])
def test_decode_errors_name_what_is_wrong(parts, match):
    with pytest.raises(TopicError, match=match):
        decode_topic(parts)


def test_sync_and_async_subscribers_decode_alike_and_skip_bad_messages(caplog):
    pub = zmq.Context.instance().socket(zmq.PUB)
    pub.bind(ANY_PORT)
    endpoint = pub.getsockopt_string(zmq.LAST_ENDPOINT)
    bad = [[b"score.cam", b"{oops"], [b"what.cam", b"{}"]]
    good = [_parts(topic, payload) for topic, payload, _ in PUBLISHED]
    warmup = _parts("eos.warmup", {**EOS, "stream": "warmup"})   # until SUB has joined
    try:
        with Subscriber(endpoint, [""]) as sub:
            wait_for(lambda: pub.send_multipart(warmup) or sub.recv(100), 10, "a connection")
            for parts in bad + good:
                pub.send_multipart(parts)
            got = []
            while sub.socket.poll(500):   # recv returns None for a skipped message too
                msg = sub.recv(0)
                if msg is not None and msg.topic != "eos.warmup":
                    got.append(msg)
        assert got == [decode_topic(parts) for parts in good]
        assert sub.skipped == 2 and "the payload is not JSON" in caplog.text

        async def read_async():
            with AsyncSubscriber(endpoint, [""]) as asub:
                first = None
                while first is None:
                    pub.send_multipart(warmup)
                    try:
                        first = await asyncio.wait_for(asub.recv(), 0.1)
                    except TimeoutError:
                        continue
                for parts in bad + good:
                    pub.send_multipart(parts)
                out = []
                while len(out) < len(good):
                    msg = await asyncio.wait_for(asub.recv(), 5)
                    if msg is not None and msg.topic != "eos.warmup":
                        out.append(msg)
                return out, asub.skipped

        assert asyncio.run(read_async()) == (got, 2)
    finally:
        pub.close(linger=0)


def _frames(clip: str, n: int):
    return [cv2.imread(str(p)) for p in list_frames(PED2 / "Test" / clip)[:n]]


@pytest.mark.slow
def test_a_real_detectors_messages_decode_to_the_bytes_it_sent(tiny_weights, tmp_path):
    db = tmp_path / "events.sqlite3"
    # --status-interval, --idle-timeout and --offline-after are generated from DetectorConfig
    detector, bound = start_detector(
        tmp_path / "ready.json", "--model", str(tiny_weights), "--device", "cpu",
        "--precision", "fp32", "--stride", "2", "--status-interval", "0.2", "--idle-timeout",
        "1", "--offline-after", "0.5", "--events-db", str(db), stderr=subprocess.DEVNULL)
    bind, publish = bound["bind"], bound["publish"]
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(publish)
    push = zmq.Context.instance().socket(zmq.PUSH)
    push.connect(bind)
    raw = []

    def take(until) -> bool:
        if sub.poll(200):
            raw.append(sub.recv_multipart())
            return until(raw[-1])
        assert detector.poll() is None, "the detector exited"
        return False
    try:
        wait_for(lambda: take(lambda p: p[0] == b"status"), 60, "the detector's first status")
        for i, image in enumerate(_frames("Test001", 12)):    # a replayed clip
            push.send_multipart(encode_frame("cam", i, 1.0 + i, image, clip="Test001",
                                             frame=i + 1))
        push.send_multipart(encode_eos("cam"))
        for i, image in enumerate(_frames("Test002", 6)):     # a camera that then goes away
            push.send_multipart(encode_frame("dead", i, 100.0 + i, image))
        wait_for(lambda: take(lambda p: p[0] == b"eos.cam"), 60, "eos.cam")
        wait_for(lambda: take(lambda p: p[0] == b"status" and "idle_ended" in str(p[1])),
                 30, "the idle stream reported ended")
    finally:
        push.close(linger=0)
        sub.close(linger=0)
        stop(detector)

    kinds, alerts = set(), []
    for parts in raw:
        msg = decode_topic(parts)
        kinds.add(msg.KIND)
        sent = json.loads(parts[1])
        assert "v" not in sent or sent["v"] == 1
        assert msg.to_parts() == [parts[0], json.dumps({"v": 1, **sent}).encode(), *parts[2:]]
        if isinstance(msg, AlertMessage):
            alerts.append(msg)
    assert kinds == {"score", "overlay", "alert", "eos", "status"}
    scores = [decode_topic(p) for p in raw if p[0] == b"score.cam"]
    assert [s.frame for s in scores] == list(range(1, 13)) and scores[0].clip == "Test001"
    assert {a.type for a in alerts} >= {"start", "end"}
    status = decode_topic(raw[-1])
    assert isinstance(status.streams["dead"], IdleStream) and status.precision
    # the end alert a restarted detector writes for an event left open
    end = recovered_end(json.loads(next(p for p in raw if p[0] == b"alert.cam")[1]))
    recovered = AlertMessage.from_dict(end)
    assert recovered.recovered and recovered.to_json() == json.dumps({"v": 1, **end})
