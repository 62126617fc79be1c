"""A network camera that stops delivering: capture reconnects, status says offline/online."""

import pytest

from stream.wire.subscriber import Subscriber
from tests.conftest import PED2, reserve_port, start_detector, stop, vadstream, wait_for
from tests.mjpeg_server import MjpegCamera


@pytest.mark.slow
def test_camera_dropout_is_survived_and_reported(tiny_weights, tmp_path):
    camera = MjpegCamera(PED2 / "Test" / "Test002", fps=15)
    config = tmp_path / "p.yaml"
    config.write_text(f"detector:\n  model: {tiny_weights}\n"
                      f"  device: cpu\n  precision: fp32\n  stride: 2\n  offline_after: 1.0\n"
                      f"  events_db: {tmp_path / 'e.sqlite3'}\n")
    try:
        det, bound = start_detector(tmp_path / "ready.json", "--config", str(config))
    except BaseException:
        camera.close()
        raise
    log = tmp_path / "capture.log"
    with open(log, "w") as err:
        cap = vadstream("capture", "--source", camera.url, "--stream-id", "ipcam", "--connect",
                        bound["bind"], "--watchdog", "1", "--max-backoff", "1", stderr=err)
    try:
        with Subscriber(bound["publish"], ["status"]) as sub:
            def online_is(value):
                m = sub.recv()
                return m is not None and m.payload["streams"].get("ipcam", {}).get(
                    "online") is value
            wait_for(lambda: online_is(True), 60, "the camera online")
            camera.pause()
            wait_for(lambda: online_is(False), 20, "the camera reported offline")
            wait_for(lambda: "stopped delivering" in log.read_text(), 20, "a reconnect attempt")
            camera.resume()
            wait_for(lambda: online_is(True), 30, "the camera online again")
            # the capture's reconnections reach the detector in the frame headers
            wait_for(lambda: (m := sub.recv()) is not None and m.payload["streams"].get(
                "ipcam", {}).get("reconnects", 0) >= 1, 10, "reconnects in status")
        assert "reconnected to" in log.read_text()
        assert cap.poll() is None and det.poll() is None
    finally:
        stop(cap)
        stop(det)
        camera.close()


def test_backoff_doubles_up_to_its_cap_and_never_overflows():
    from stream.capture.pusher import backoff_delay
    assert [backoff_delay(a, 30) for a in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert backoff_delay(10**6, 30) == 30


@pytest.mark.slow
def test_a_camera_down_at_start_is_waited_for(tmp_path):
    """A stream URL that does not answer yet: capture keeps retrying instead of exiting."""
    log = tmp_path / "c.log"
    # Reserved ports: nothing listens there, and nothing else gets them meanwhile.
    with open(log, "w") as err:
        cap = vadstream("capture", "--source", f"http://127.0.0.1:{reserve_port()}/x.mjpg",
                        "--stream-id", "later", "--connect", f"tcp://127.0.0.1:{reserve_port()}",
                        "--watchdog", "1", "--max-backoff", "1", stderr=err)
    try:
        wait_for(lambda: log.read_text().count("retrying in") >= 3, 60, "retries")
        assert cap.poll() is None, log.read_text()     # still waiting, after three attempts
    finally:
        stop(cap)
    assert cap.returncode == 0       # and it stops cleanly when told to
