"""``vadstream serve`` over real HTTP, started before a real detector, capture and clip."""

import asyncio
import json
import re
import struct
import subprocess
import sys
import urllib.error
import urllib.request

import aiohttp
import cv2
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import (
    PED2,
    ROOT,
    Lines,
    reserve_port,
    start_detector,
    stop,
    vadstream,
    vadstream_run,
    wait_for,
)


def _get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as res:
            return res.status, res.headers.get("Content-Type", ""), res.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read()


def _json(url: str) -> dict:
    status, _, body = _get(url)
    assert status == 200, body
    return json.loads(body)


def _metrics(base: str) -> dict:
    status, kind, body = _get(f"{base}/metrics")
    assert status == 200 and kind.startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(body.decode()) for s in f.samples}


async def _first_overlay(url: str, timeout: float = 30) -> tuple[dict, dict, bytes]:
    async with asyncio.timeout(timeout), aiohttp.ClientSession() as session, \
            session.ws_connect(url) as ws:
        hello = json.loads((await ws.receive(timeout=10)).data)
        while True:
            msg = await ws.receive(timeout=10)
            if msg.type == aiohttp.WSMsgType.BINARY:
                n = struct.unpack(">I", msg.data[:4])[0]
                return hello, json.loads(msg.data[4:4 + n]), msg.data[4 + n:]
            assert msg.type == aiohttp.WSMsgType.TEXT, msg


def _serve(*args: str) -> tuple[subprocess.Popen, str]:
    """``vadstream serve ARGS`` on a port it picks; the process and its base URL."""
    proc = vadstream("serve", "--http", "127.0.0.1:0", *args, stdout=subprocess.PIPE,
                     text=True)
    try:
        line = Lines(proc.stdout).next(60, "the dashboard's address")
        found = re.match(r"dashboard: (http://127\.0\.0\.1:\d+)/ ", line or "")
        assert found, f"{line!r} (exit code {proc.poll()})"
    except BaseException:
        stop(proc)
        raise
    return proc, found.group(1)


@pytest.fixture
def serve(tmp_path):
    # The dashboard connects before the detector binds: a reserved port (see reserve_port).
    publish = f"tcp://127.0.0.1:{reserve_port()}"
    proc, base = _serve("--connect", publish, "--events-db", str(tmp_path / "events.sqlite3"))
    yield base, publish, proc
    stop(proc)
    assert proc.returncode == 0


@pytest.mark.slow
def test_api_metrics_and_snapshots_with_the_detector_started_after_serve(serve, tmp_path,
                                                                          tiny_weights):
    base, publish, proc = serve
    status, kind, page = _get(f"{base}/")
    assert status == 200 and kind.startswith("text/html") and b"/static/app.js" in page
    for asset in ("app.js", "style.css"):
        status, _, body = _get(f"{base}/static/{asset}")
        assert status == 200 and b"http://" not in body and b"https://" not in body  # no CDN
    streams = _json(f"{base}/api/streams")
    assert streams["detector"]["reachable"] is False and streams["streams"] == []
    assert streams["detector"]["endpoint"] == publish
    assert _metrics(base)[("vadstream_detector_up", ())] == 0
    assert _json(f"{base}/api/events")["events"] == []      # no store yet: nothing, no error
    maps = open(f"/proc/{proc.pid}/maps").read()
    assert "libmxnet" not in maps                           # serve never loads the model

    detector, bound = start_detector(tmp_path / "ready.json", "--model", str(tiny_weights),
                                     "--device", "cpu",
                                     "--precision", "fp32", "--stride", "2", "--events-db",
                                     str(tmp_path / "events.sqlite3"), publish=publish)
    bind = bound["bind"]
    capture = None
    try:
        wait_for(lambda: _json(f"{base}/api/streams")["detector"]["reachable"], 60,
                 "the dashboard to see the detector")
        capture = vadstream("capture", "--source", str(PED2 / "Test" / "Test001"),
                            "--stream-id", "ucsd", "--connect", bind, "--fps", "20", "--loop")
        # random weights flag every frame: one event opens and stays open
        events = wait_for(lambda: _json(f"{base}/api/events?stream=ucsd&since=1h")["events"],
                          60, "an event in the store")
        event = events[0]
        assert event["stream"] == "ucsd" and event["open"] and event["peak_score"] > 0
        status, kind, jpeg = _get(f"{base}{event['snapshot']}")
        assert status == 200 and kind == "image/jpeg"
        assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (240, 360, 3)

        latest = wait_for(lambda: (r := _get(f"{base}/api/streams/ucsd/latest.jpg"))[0] == 200
                          and r, 30, "a latest overlay")
        assert latest[1] == "image/jpeg" and latest[2][:2] == b"\xff\xd8"
        stream = wait_for(lambda: [s for s in _json(f"{base}/api/streams")["streams"]
                                   if s["fps"]["processed"] > 0], 30, "a frame rate")[0]
        assert stream["id"] == "ucsd" and stream["online"] and stream["event_open"]
        assert stream["events"] == 1 and stream["threshold"] == 30

        frames = wait_for(lambda: _json(f"{base}{event['frames_url']}")["frames"], 30,
                          "frames around the event")
        status, kind, body = _get(f"{base}{frames[0]['url']}")
        assert status == 200 and kind == "image/jpeg" and body[:2] == b"\xff\xd8"

        hello, header, jpeg = asyncio.run(_first_overlay(f"{base}/ws"))
        assert hello["type"] == "hello" and hello["detector"]["reachable"]
        assert "ucsd" in hello["scores"] and header["stream"] == "ucsd" and jpeg[:2] == b"\xff\xd8"

        got = _metrics(base)
        ucsd = (("stream", "ucsd"),)
        assert got[("vadstream_detector_up", ())] == 1
        assert got[("vadstream_frames_scored_total", ucsd)] > 0
        assert got[("vadstream_events_opened_total", ucsd)] == 1
        assert got[("vadstream_processed_fps", ucsd)] > 0
        assert got[("vadstream_inference_seconds_count", ())] > 0
        assert got[("vadstream_reconnects_total", ucsd)] == 0
        assert got[("vadstream_event_open", ucsd)] == 1

        for path, code in [("/api/events?since=yesterday", 400), ("/api/events?limit=0", 400),
                           ("/api/events/abc123/snapshot.jpg", 404),
                           ("/api/events/not-hex!/frames/1.jpg", 404),
                           ("/api/streams/nope/latest.jpg", 404)]:
            status, kind, body = _get(f"{base}{path}")
            assert status == code and json.loads(body)["error"], path
    finally:
        if capture is not None:
            stop(capture)
        stop(detector)
    wait_for(lambda: not _json(f"{base}/api/streams")["detector"]["reachable"], 30,
             "the detector reported unreachable")
    assert _metrics(base)[("vadstream_detector_up", ())] == 0
    # the store outlives the detector: the event (ended at shutdown) and its snapshot remain
    event = _json(f"{base}/api/events")["events"][0]
    assert not event["open"] and _get(f"{base}{event['snapshot']}")[0] == 200


@pytest.mark.slow
def test_bad_addresses_are_one_clear_line(tmp_path):
    out = vadstream_run("serve", "--http", "127.0.0.1:http")
    assert out.returncode == 2 and "is not HOST:PORT" in out.stderr
    first, base = _serve("--connect", f"tcp://127.0.0.1:{reserve_port()}")
    port = int(base.rsplit(":", 1)[1])
    try:
        out = vadstream_run("serve", "--http", f"127.0.0.1:{port}")
        assert out.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in out.stderr
    finally:
        stop(first)


def test_the_command_line_loads_no_mxnet_until_a_command_needs_it():
    code = ("import sys; from stream.apps import cli; "
            "cli.build_parser().parse_args(['serve', '--history', '60']); "
            "import stream.defaults; from stream.dashboard.app import build_app; "
            "from stream.dashboard.config import ServeConfig; build_app(ServeConfig()); "
            "print('mxnet' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True, timeout=120)
    assert out.stdout.strip() == "False"
    # stream.defaults computes the shipped weights' path without MXNet: the same path
    from models import DEFAULT_WEIGHTS, STAE_WEIGHTS
    from stream.defaults import STAE_WEIGHTS as STAE
    from stream.defaults import WEIGHTS
    assert WEIGHTS == DEFAULT_WEIGHTS and STAE == STAE_WEIGHTS
