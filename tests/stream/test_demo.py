"""``vadstream demo`` as a user runs it: real processes, real clip, shipped weights."""

import json
import signal
import subprocess

import cv2
import pytest

from models import DEFAULT_WEIGHTS
from tests.conftest import PED2, stop, vadstream, wait_for


def _strays(marker: str) -> list[str]:
    out = subprocess.run(["pgrep", "-af", "--", marker], capture_output=True, text=True,
                         timeout=30).stdout
    return [line for line in out.splitlines() if "pgrep" not in line]


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_demo_on_a_ucsd_clip_writes_summary_and_video(tmp_path):
    summary, video = tmp_path / "demo.json", tmp_path / "overlays.mp4"
    proc = vadstream("demo", "--source", str(PED2 / "Test" / "Test001"), "--fps", "10",
                     "--json", str(summary), "--video", str(video), "--device", "cpu",
                     "--precision", "fp32",
                     stdout=subprocess.PIPE, text=True)
    try:
        out, _ = proc.communicate(timeout=300)
    finally:
        stop(proc)
    assert proc.returncode == 0, out
    assert f"weights {DEFAULT_WEIGHTS}" in out
    assert "demo: open http://127.0.0.1:" in out     # the dashboard runs beside it
    data = json.loads(summary.read_text())
    assert set(data) >= {"frames", "fps", "alerts"}
    assert 100 <= data["frames"] <= 180 and data["fps"] > 0
    starts = [a["id"] for a in data["alerts"] if a["type"] == "start"]
    ends = [a["id"] for a in data["alerts"] if a["type"] == "end"]
    # the cyclist of Test001 (frames 61-180) raises events; each one opened is closed
    assert starts and starts == ends
    printed = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [a["id"] for a in printed] == [a["id"] for a in data["alerts"]]
    cap = cv2.VideoCapture(str(video))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == data["frames"]
    ok, frame = cap.read()
    assert ok and frame.shape == (240, 360, 3)
    assert _strays(str(video)) == []


@pytest.mark.slow
def test_ctrl_c_stops_everything(tmp_path):
    video = tmp_path / "v.mp4"
    proc = vadstream("demo", "--source", str(PED2 / "Test" / "Test002"), "--fps", "5",
                     "--video", str(video), "--json", str(tmp_path / "s.json"),
                     "--precision", "fp32",
                     stdout=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: _strays(f"capture --source {PED2 / 'Test' / 'Test002'}"), 60,
                 "the capture process")
        # Interrupted mid-stream: once frames went all the way through (the recorder opens
        # the video at the first overlay).
        wait_for(lambda: video.is_file() and video.stat().st_size > 0, 60,
                 "the first overlay in the video")
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        stop(proc)
    assert proc.returncode == 130, out
    assert json.loads((tmp_path / "s.json").read_text())["interrupted"] is True
    assert _strays(str(video)) == [] and _strays(str(tmp_path)) == []


def test_the_dashboard_takes_a_port_of_its_own_when_the_default_is_busy():
    import socket

    from stream.apps.demo import dashboard_address
    from stream.dashboard.config import split_host_port
    from stream.defaults import DASHBOARD_HTTP

    assert dashboard_address("127.0.0.1:9999") == "127.0.0.1:9999"
    host, port = split_host_port(DASHBOARD_HTTP)
    with socket.socket() as busy:
        try:
            busy.bind((host, port))
        except OSError:
            pass          # something else holds it already: just as busy
        busy.listen()
        assert dashboard_address(None) == f"{host}:0"   # serve picks it and prints it
