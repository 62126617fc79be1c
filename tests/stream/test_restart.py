"""Detector stopped cleanly ends open events; detector killed and restarted: captures and
subscribers carry on by themselves."""

import os
import signal

import pytest

from stream.wire.subscriber import Subscriber
from tests.conftest import PED2, free_port, stop, vadstream, wait_for


def _detector(weights, bind, publish, db):
    return vadstream("detect", "--model", str(weights), "--bind", bind, "--publish", publish,
                     "--device", "cpu", "--precision", "fp32", "--stride", "2",
                     "--events-db", str(db))


def test_sigterm_ends_open_events_and_restart_resumes_everything(tiny_weights, tmp_path):
    bind, publish = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    db = tmp_path / "e.sqlite3"
    det = _detector(tiny_weights, bind, publish, db)
    cap = vadstream("capture", "--source", str(PED2 / "Test" / "Test003"), "--stream-id", "rs",
                    "--connect", bind, "--fps", "15", "--loop")
    try:
        with Subscriber(publish, ["alert.rs", "score.rs"]) as sub:
            got = []
            def seen(kind):
                m = sub.recv()
                if m is not None:
                    got.append(m)
                return any(x.topic == "alert.rs" and x.payload["type"] == kind for x in got)
            wait_for(lambda: seen("start"), 60, "an event to open")
            det.send_signal(signal.SIGTERM)
            wait_for(lambda: seen("end"), 20, "the end alert of a clean shutdown")
            assert det.wait(20) == 0
            # a new detector on the same endpoints, after a kill -9 of the next one
            det = _detector(tiny_weights, bind, publish, db)
            got.clear()
            wait_for(lambda: seen("start"), 60, "scores and alerts after the restart")
            os.kill(det.pid, signal.SIGKILL)
            det.wait(10)
            det = _detector(tiny_weights, bind, publish, db)
            got.clear()
            wait_for(lambda: any(m.topic == "score.rs" for m in got) or seen("start"), 60,
                     "scores after a kill -9 and restart")
        assert cap.poll() is None            # the capture never noticed beyond some drops
    finally:
        stop(cap)
        stop(det)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_clean_stop_sends_end_alerts(tiny_weights, tmp_path, sig):
    bind, publish = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    det = _detector(tiny_weights, bind, publish, tmp_path / "e.sqlite3")
    cap = vadstream("capture", "--source", str(PED2 / "Test" / "Test005"), "--stream-id", "st",
                    "--connect", bind, "--fps", "15", "--loop")
    try:
        with Subscriber(publish, ["alert.st"]) as sub:
            kinds = []
            def seen(kind):
                m = sub.recv()
                if m is not None:
                    kinds.append(m.payload["type"])
                return kind in kinds
            wait_for(lambda: seen("start"), 60, "an event to open")
            det.send_signal(sig)
            wait_for(lambda: seen("end"), 20, "the end alert")
        assert det.wait(20) == 0
    finally:
        stop(cap)
        stop(det)
