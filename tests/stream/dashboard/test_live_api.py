"""Cameras added, changed and removed through the dashboard's API while a real `vadstream
run` runs: the supervisor starts and stops real captures, the detector scores real Ped2
frames, the dashboard serves real HTTP."""

import os
import signal
import subprocess
import threading
from pathlib import Path

import pytest
import yaml

from stream.dashboard.app import run_serve
from stream.dashboard.config import ServeConfig
from stream.wire.control import ControlClient, NoReplyError
from tests.conftest import PED2, reserve_port, stop, vadstream, wait_for
from tests.conftest import call_json as _call


def _stream(base: str, stream: str) -> dict | None:
    _, body = _call("GET", f"{base}/api/streams")
    return next((s for s in body["streams"] if s["id"] == stream), None)


def _pids(pattern: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", "--", pattern], capture_output=True, text=True,
                         timeout=30).stdout
    return [int(p) for p in out.split()]


def _detector_threshold(control: str, stream: str) -> float | None:
    with ControlClient(control, timeout_s=2) as client:
        try:
            return client.state()["streams"].get(stream, {}).get("threshold")
        except NoReplyError:
            return None


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return True
    return state == "Z"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_camera_added_changed_and_removed_through_the_api(tiny_weights, tmp_path):
    bind, publish, control, supervisor = (f"tcp://127.0.0.1:{reserve_port()}"
                                          for _ in range(4))
    tag = os.getpid()
    saved, live = f"saved-{tag}", f"live-{tag}"
    streams_file = tmp_path / "cameras.yaml"
    # A camera added by an earlier run, kept in the streams file: started with this one.
    streams_file.write_text(yaml.safe_dump([{"id": saved, "source": str(PED2 / "Test" /
                                                                         "Test002"),
                                             "fps": 20, "loop": True, "threshold": 77.0}]))
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump({
        "detector": {"bind": bind, "publish": publish, "control": control,
                     "model": str(tiny_weights), "device": "cpu", "precision": "fp32",
                     "stride": 2, "max_batch": 4, "status_interval": 0.5,
                     "events_db": str(tmp_path / "events.sqlite3")},
        "supervisor": {"control": supervisor, "streams_file": str(streams_file),
                       "restart_delay": 0.2},
        "streams": []}))
    log = tmp_path / "run.log"
    with open(log, "w") as err:
        run = vadstream("run", "--config", str(config), stderr=err)
    stopping = threading.Event()
    urls: list[str] = []
    serve = ServeConfig(connect=publish, http="127.0.0.1:0", control=control,
                        supervisor=supervisor, events_db=str(tmp_path / "events.sqlite3"))
    server = threading.Thread(target=run_serve, args=(serve, stopping, urls.append))
    server.start()
    try:
        base = wait_for(lambda: urls, 30, "the dashboard to listen")[0].rstrip("/")
        entry = {"id": live, "source": str(PED2 / "Test" / "Test001"), "fps": 20,
                 "loop": True}
        status, added = _call("POST", f"{base}/api/streams", entry)
        assert status == 200, added
        assert added["running"] and added["added"] and added["detector"]["detect"] is True
        pid = added["pid"]

        # refusals name what is wrong
        status, body = _call("POST", f"{base}/api/streams", entry)
        assert status == 400 and "already" in body["error"]
        status, body = _call("POST", f"{base}/api/streams", {**entry, "id": "x", "fsp": 2})
        assert status == 400 and "'fsp'" in body["error"] and "valid keys" in body["error"]
        status, body = _call("POST", f"{base}/api/streams/{live}/threshold", {"value": "x"})
        assert status == 400 and "finite number" in body["error"]

        assert yaml.safe_load(streams_file.read_text()) == [
            {"id": saved, "source": str(PED2 / "Test" / "Test002"), "fps": 20.0,
             "loop": True, "threshold": 77.0}, entry]
        wait_for(lambda: all((_stream(base, s) or {}).get("scored") for s in (saved, live)),
                 120, "both cameras scored")
        assert _stream(base, saved)["settings"]["threshold"] == 77.0

        status, body = _call("POST", f"{base}/api/streams/{live}/threshold", {"value": 1234.5})
        assert status == 200 and body["threshold"] == 1234.5 and body["threshold_override"]
        wait_for(lambda: _stream(base, live)["settings"]["threshold"] == 1234.5, 30,
                 "the new threshold in status")
        status, body = _call("POST", f"{base}/api/streams/{live}/detect", {"on": False})
        assert status == 200 and body["detect"] is False
        wait_for(lambda: _stream(base, live)["settings"]["paused"], 30, "paused frames")
        zone = [[0, 0], [120, 0], [120, 60], [0, 60]]
        status, body = _call("POST", f"{base}/api/streams/{live}/mask", {"polygons": [zone]})
        assert status == 200 and body["mask"] == [zone]
        wait_for(lambda: _stream(base, live)["settings"]["masked"], 30, "masked in status")
        status, body = _call("POST", f"{base}/api/streams/{live}/model",
                             {"weights": str(tmp_path / "missing")})
        assert status == 400 and "cannot load" in body["error"]
        missing = body["error"].replace(str(tmp_path / "missing"), "NAME")
        # A file outside the allowed model folders: refused with the very same text, so a
        # request learns nothing of which files exist.
        status, body = _call("POST", f"{base}/api/streams/{live}/model",
                             {"weights": "/etc/passwd"})
        assert status == 400 and body["error"].replace("/etc/passwd", "NAME") == missing
        assert "allowed model folder" in body["error"]
        status, body = _call("POST", f"{base}/api/streams/{live}/threshold", {"value": 1e308})
        assert status == 400 and "outside" in body["error"] and "calibrated" in body["error"]
        status, body = _call("POST", f"{base}/api/streams/{live}/detect", {"value": 1})
        assert status == 400 and '{"on": ...}' in body["error"]
        status, body = _call("GET", f"{base}/api/streams/{live}/settings")
        assert status == 200 and body["detect"] is False and body["threshold"] == 1234.5
        assert body["mask"] == [zone]

        status, cameras = _call("GET", f"{base}/api/cameras")
        assert status == 200
        assert {c["id"]: c["running"] for c in cameras["streams"]} == {saved: True, live: True}

        status, removed = _call("DELETE", f"{base}/api/streams/{live}")
        assert status == 200 and removed["stream"] == live, removed
        assert _gone(pid), "the capture process still runs"
        status, body = _call("DELETE", f"{base}/api/streams/{live}")
        assert status == 400 and "no camera" in body["error"]
        with ControlClient(control, timeout_s=30) as client:
            wait_for(lambda: live not in client.state()["streams"], 30,
                     "the detector to forget the removed camera")
            assert client.state()["streams"][saved]["tracked"]
        assert [s["id"] for s in yaml.safe_load(streams_file.read_text())] == [saved]
        _, cameras = _call("GET", f"{base}/api/cameras")
        assert [c["id"] for c in cameras["streams"]] == [saved]

        # A restarted detector knows only the config's streams: the supervisor tells it
        # the added camera's settings again.
        (detector,) = _pids(f"detect --config {config}")
        os.kill(detector, signal.SIGKILL)
        wait_for(lambda: _detector_threshold(control, saved) == 77.0, 90,
                 "the restarted detector to have the added camera's threshold")
    finally:
        stopping.set()
        server.join(30)
        run.send_signal(signal.SIGINT)
        try:
            assert run.wait(60) == 0, log.read_text()[-3000:]
        finally:
            stop(run)
    text = log.read_text()
    assert f"camera {live} added" in text and f"camera {live} removed" in text
    assert f"control: stream {live} threshold 1234.5" in text
    assert "restarting detector" in text and f"camera {saved} configured on the restarted" in text


@pytest.mark.timeout(60)
def test_without_the_supervisor_the_api_answers_503_naming_it(tmp_path, monkeypatch):
    port = reserve_port()
    stopping = threading.Event()
    urls: list[str] = []
    serve = ServeConfig(connect=f"tcp://127.0.0.1:{reserve_port()}", http="127.0.0.1:0",
                        control="", supervisor=f"tcp://127.0.0.1:{port}",
                        events_db=str(tmp_path / "events.sqlite3"))
    monkeypatch.setattr("stream.dashboard.control.SUPERVISOR_TIMEOUT_S", 1.0)
    server = threading.Thread(target=run_serve, args=(serve, stopping, urls.append))
    server.start()
    try:
        base = wait_for(lambda: urls, 30, "the dashboard to listen")[0].rstrip("/")
        status, body = _call("POST", f"{base}/api/streams", {"id": "a", "source": "x"})
        assert status == 503 and f"127.0.0.1:{port}" in body["error"]
        assert "vadstream run" in body["error"]
        status, body = _call("POST", f"{base}/api/streams/a/detect", {"on": True})
        assert status == 503 and "--control" in body["error"]
    finally:
        stopping.set()
        server.join(30)
