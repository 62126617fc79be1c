"""CURVE: only clients with an admitted key can push frames or read topics."""

import shutil

import pytest

from stream.wire.security import CurveClient
from stream.wire.subscriber import Subscriber
from tests.conftest import (
    PED2,
    start_detector,
    stop,
    vadstream,
    vadstream_run,
    wait_for,
    wait_for_status,
    wait_subscribed,
)


@pytest.mark.slow
def test_only_admitted_keys_push_frames_and_read_alerts(tiny_weights, tmp_path):
    keys = tmp_path / "keys"
    made = vadstream_run("keys", "--dir", str(keys), "--name", "server", "--name", "client",
                         "--name", "intruder")
    assert made.returncode == 0, made.stderr
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    shutil.copy(keys / "client.key", allowed)
    det, bound = start_detector(tmp_path / "ready.json", "--model", str(tiny_weights),
                                "--device", "cpu",
                                "--precision", "fp32", "--stride", "2", "--events-db",
                                str(tmp_path / "e.db"), "--curve-secret-key",
                                str(keys / "server.key_secret"), "--curve-allowed", str(allowed))
    bind, publish = bound["bind"], bound["publish"]
    server = str(keys / "server.key")
    good = CurveClient(str(keys / "client.key_secret"), server)
    bad = CurveClient(str(keys / "intruder.key_secret"), server)
    try:
        with Subscriber(publish, ["status", "score.", "alert.", "eos."], curve=good) as ok_sub, \
                Subscriber(publish, [""], curve=bad) as bad_sub, \
                Subscriber(publish, [""]) as plain_sub:
            seen = []     # every message the admitted subscriber gets from here on
            wait_subscribed(ok_sub, ["status", "score.", "alert.", "eos."], keep=seen)
            intruder = vadstream("capture", "--source", str(PED2 / "Test" / "Test001"),
                                 "--stream-id", "intruder", "--connect", bind, "--fps", "0",
                                 "--curve-key", str(keys / "intruder.key_secret"),
                                 "--curve-server", server)
            plain = vadstream("capture", "--source", str(PED2 / "Test" / "Test001"),
                              "--stream-id", "plain", "--connect", bind, "--fps", "0")
            try:
                assert intruder.wait(60) == 0 and plain.wait(60) == 0   # they sent all they could
            finally:
                stop(intruder)
                stop(plain)
            # Then an admitted capture, until its alerts came through and a status that
            # counts its frames: had the detector let the others in, their frames (sent
            # before) would have been scored and counted by then.
            friend = vadstream("capture", "--source", str(PED2 / "Test" / "Test001"),
                               "--stream-id", "friend", "--connect", bind, "--fps", "30",
                               "--curve-key", str(keys / "client.key_secret"),
                               "--curve-server", server)
            try:
                def got(topic):
                    m = ok_sub.recv()
                    if m is not None:
                        seen.append(m)
                    return any(x.topic == topic for x in seen)
                wait_for(lambda: got("score.friend"), 60, "scores of the admitted capture")
                wait_for(lambda: got("alert.friend"), 60, "alerts for the admitted subscriber")
                status = wait_for_status(ok_sub, lambda s: s["streams"].get("friend", {}).get(
                    "scored", 0) > 0, 30, "a status with the admitted stream", keep=seen)
            finally:
                stop(friend)
            streams = {m.payload.get("stream") for m in seen} | set(status["streams"])
            streams |= {s for m in seen if m.topic == "status" for s in m.payload["streams"]}
            assert "friend" in streams and not {"intruder", "plain"} & streams, streams
            assert status["rejected"] == {}      # kept out by CURVE, before any decoding
            assert bad_sub.recv(500) is None and plain_sub.recv(500) is None
    finally:
        stop(det)
