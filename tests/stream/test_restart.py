"""Detector stopped cleanly ends open events; detector killed and restarted: captures and
subscribers carry on by themselves."""

import os
import signal

import pytest

from stream.wire.subscriber import Subscriber
from tests.conftest import PED2, reserve_port, start_detector, stop, vadstream, wait_for


def _detector(weights, ready, db, **endpoints):
    return start_detector(ready, "--model", str(weights), "--device", "cpu",
                          "--precision", "fp32", "--stride", "2",
                          "--events-db", str(db), **endpoints)


@pytest.mark.slow
def test_sigterm_ends_open_events_and_restart_resumes_everything(tiny_weights, tmp_path):
    # Restarted on the same endpoints: ports reserved for the session (see reserve_port),
    # since between two detectors nothing holds them.
    bind, publish = (f"tcp://127.0.0.1:{reserve_port()}" for _ in range(2))
    db = tmp_path / "e.sqlite3"
    det, _ = _detector(tiny_weights, tmp_path / "ready1.json", db, bind=bind, publish=publish)
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
            det, _ = _detector(tiny_weights, tmp_path / "ready2.json", db, bind=bind,
                               publish=publish)
            got.clear()
            wait_for(lambda: seen("start"), 60, "scores and alerts after the restart")
            os.kill(det.pid, signal.SIGKILL)
            assert det.wait(10) == -signal.SIGKILL
            while sub.recv(300) is not None:   # what the killed one sent before it died
                pass
            det, _ = _detector(tiny_weights, tmp_path / "ready3.json", db, bind=bind,
                               publish=publish)
            got.clear()
            wait_for(lambda: any(m.topic == "score.rs" for m in got) or seen("start"), 60,
                     "scores after a kill -9 and restart")
        assert cap.poll() is None            # the capture never noticed beyond some drops
    finally:
        stop(cap)
        stop(det)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_clean_stop_sends_end_alerts(tiny_weights, tmp_path, sig):
    det, bound = _detector(tiny_weights, tmp_path / "ready.json", tmp_path / "e.sqlite3")
    cap = vadstream("capture", "--source", str(PED2 / "Test" / "Test005"), "--stream-id", "st",
                    "--connect", bound["bind"], "--fps", "15", "--loop")
    try:
        with Subscriber(bound["publish"], ["alert.st"]) as sub:
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
