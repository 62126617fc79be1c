"""kill -9 of the detector mid-event: the store holds every published alert, and the next
detector ends the event it left open."""

import json
import os
import signal

from stream.wire.subscriber import Subscriber
from tests.conftest import PED2, free_port, stop, vadstream, vadstream_run, wait_for


def _start_detector(weights, db, bind, publish):
    return vadstream("detect", "--model", str(weights), "--bind", bind, "--publish", publish,
                     "--device", "cpu", "--precision", "fp32", "--stride", "2",
                     "--events-db", str(db))


def test_kill_9_mid_event_loses_no_alert(tiny_weights, tmp_path):
    db = tmp_path / "events.sqlite3"
    bind, publish = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    det = _start_detector(tiny_weights, db, bind, publish)
    received = []
    with Subscriber(publish, ["alert.", "status"]) as sub:
        wait_for(lambda: (m := sub.recv()) is not None and m.topic == "status", 60, "detector")
        cap = vadstream("capture", "--source", str(PED2 / "Test" / "Test001"), "--stream-id",
                        "crash", "--connect", bind, "--fps", "20", "--loop")
        def alerts_after_update():
            m = sub.recv()
            if m is not None and m.topic.startswith("alert."):
                received.append(m.payload)
            return any(a["type"] == "update" for a in received)
        wait_for(alerts_after_update, 60, "a start and an update alert")
        os.kill(det.pid, signal.SIGKILL)
        det.wait(10)
        while (m := sub.recv(300)) is not None:      # whatever was still in flight
            if m.topic.startswith("alert."):
                received.append(m.payload)
    stop(cap)
    out = vadstream_run("events", "--db", str(db), "--json").stdout
    stored = [json.loads(line) for line in out.splitlines()]
    assert received and stored[:len(received)] == received   # every published alert is stored
    assert stored[-1]["type"] != "end"                       # the event was left open

    det = _start_detector(tiny_weights, db, f"tcp://127.0.0.1:{free_port()}",
                          f"tcp://127.0.0.1:{free_port()}")
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

