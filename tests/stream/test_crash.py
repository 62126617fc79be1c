"""kill -9 of the detector mid-event: the store holds every published alert, and the next
detector ends the event it left open."""

import json
import os
import signal

import pytest

from stream.wire.subscriber import Subscriber
from tests.conftest import (
    PED2,
    start_detector,
    stop,
    vadstream,
    vadstream_run,
    wait_for,
    wait_subscribed,
)


def _start_detector(weights, db, ready):
    return start_detector(ready, "--model", str(weights), "--device", "cpu",
                          "--precision", "fp32", "--stride", "2",
                          "--events-db", str(db))


@pytest.mark.slow
def test_kill_9_mid_event_loses_no_alert(tiny_weights, tmp_path):
    db = tmp_path / "events.sqlite3"
    det, bound = _start_detector(tiny_weights, db, tmp_path / "ready1.json")
    received = []
    cap = None
    try:
        with Subscriber(bound["publish"], ["alert.", "status"]) as sub:
            wait_subscribed(sub, ["alert."])
            cap = vadstream("capture", "--source", str(PED2 / "Test" / "Test001"),
                            "--stream-id", "crash", "--connect", bound["bind"], "--fps", "20",
                            "--loop")
            def alerts_after_update():
                m = sub.recv()
                if m is not None and m.topic.startswith("alert."):
                    received.append(m.payload)
                return any(a["type"] == "update" for a in received)
            wait_for(alerts_after_update, 60, "a start and an update alert")
            os.kill(det.pid, signal.SIGKILL)
            assert det.wait(10) == -signal.SIGKILL
            # whatever was still in flight: a dead publisher sends nothing more
            while (m := sub.recv(300)) is not None:
                if m.topic.startswith("alert."):
                    received.append(m.payload)
    finally:
        stop(det)
        if cap is not None:
            stop(cap)
    out = vadstream_run("events", "--db", str(db), "--json").stdout
    stored = [json.loads(line) for line in out.splitlines()]
    assert received and stored[:len(received)] == received   # every published alert is stored
    assert stored[-1]["type"] != "end"                       # the event was left open

    det, _ = _start_detector(tiny_weights, db, tmp_path / "ready2.json")
    try:
        def recovered():
            out = vadstream_run("events", "--db", str(db), "--json", "--stream", "crash",
                                "--limit", "1").stdout
            return out and json.loads(out)["type"] == "end" and json.loads(out)
        end = wait_for(recovered, 60, "the recovered end alert")
    finally:
        stop(det)
    assert end["recovered"] is True and end["id"] == received[0]["id"]
    assert end["end_seq"] == stored[-1]["seq"]

