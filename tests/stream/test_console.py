"""A console a person can read: alert lines on a terminal, JSON Lines when piped, and none of
MXNet's own messages on standard error (real processes, real clip, shipped weights)."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
import sys
import time

import pytest

from stream.apps.console import Style, clock, format_alert, format_status, wants_human
from stream.apps.quiet import MXNET_LOG_LINE
from stream.wire.topics import AlertMessage, StatusMessage
from tests.conftest import PED2, ROOT, make_weights, start_detector, stop

NOW = 1_800_000_000.0       # a fixed "now": the clock shows no date for the same day
ALERT = {"v": 1, "type": "start", "id": "3fa2c1d09b8e4f6a8e0e3b1f2a4c5d6e", "stream": "ped2",
         "start_seq": 85, "start_ts": NOW - 2.0, "end_seq": None, "end_ts": None, "seq": 86,
         "ts": NOW - 1.9, "score": 612.34, "peak_score": 612.34, "peak_seq": 86,
         "threshold": 519.8, "frames": 2, "boxes": [[10, 10, 20, 20]], "clip": "Test001",
         "frame": 87}
#: A readable alert line (ANSI colour left out).
LINE = re.compile(r"^(\d\d:\d\d:\d\d)  (\S+)  (START|UPDATE|END)\s+(score|peak) ([\d.]+) "
                  r"(≥|<|>=) ([\d.]+).*  (clip \S+ frame \d+|frame seq \d+)  event [0-9a-f]{8}"
                  r"(  video \S+\.mp4)?$")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _mxnet_noise(stderr: str) -> list[str]:
    """Lines of MXNet's C++ logging or of Python warnings."""
    return [line for line in stderr.splitlines()
            if MXNET_LOG_LINE.match(line.encode()) or "Warning:" in line
            or "warnings.warn" in line]


def test_alert_lines_say_when_where_what_and_which_event():
    start = AlertMessage.from_dict(ALERT)
    hms = time.strftime("%H:%M:%S", time.localtime(ALERT["ts"]))
    assert format_alert(start, now=NOW) == (
        f"{hms}  ped2  START   score 612.3 ≥ 519.8  clip Test001 frame 87  event 3fa2c1d0")
    update = AlertMessage.from_dict({**ALERT, "type": "update", "score": 400.0,
                                     "peak_score": 700.0})
    assert "UPDATE  score 400.0 < 519.8, peak 700.0  clip Test001" in format_alert(update, now=NOW)
    end = AlertMessage.from_dict({**ALERT, "type": "end", "end_seq": 117, "end_ts": NOW + 1.2,
                                  "ts": NOW + 1.2, "frames": 31, "peak_score": 748.0,
                                  "score": 300.0, "clip": None, "frame": None, "seq": 117})
    ended = format_alert(end, style=Style(unicode=False), now=NOW)
    assert "END     peak 748.0 >= 519.8, 31 frames in 3.2 s  frame seq 117  event 3fa2c1d0" \
        in ended
    filmed = AlertMessage.from_dict({**end.to_dict(), "clip_path": "/var/clips/ped2/3fa2.mp4"})
    assert format_alert(filmed, now=NOW).endswith("event 3fa2c1d0  video /var/clips/ped2/3fa2.mp4")
    for line in (format_alert(start, now=NOW), format_alert(update, now=NOW), ended,
                 format_alert(filmed, now=NOW)):
        assert LINE.match(line), line
    # another day's alert carries its date
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$", clock(NOW - 3 * 86400, now=NOW))


def test_status_is_one_line_of_every_stream():
    status = StatusMessage.from_dict({
        "v": 1, "ts": NOW, "uptime_s": 600.0, "rule": "top", "threshold": 196.2,
        "status_interval": 1.0, "rejected": {},
        "streams": {"cam1": {"received": 100, "scored": 99, "dropped": 1, "overrun": 0,
                             "fps": 10.0, "queue": 0, "event_open": True, "events": 2,
                             "reconnects": 0, "online": True, "clip": None},
                    "cam2": {"online": False, "last_seen": NOW - 60, "idle_ended": True}}})
    line = format_status(status, now=NOW)
    assert "\n" not in line and "up 10 min, top threshold 196.2" in line
    assert "cam1 10.0 fps, queue 0, 1 dropped, 2 events, event open · cam2 offline" in line


def test_terminal_gets_lines_a_pipe_gets_json_unless_told():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    class Args:
        pretty = json_lines = False

    args = Args()
    assert wants_human(args, Tty()) and not wants_human(args, io.StringIO())
    args.pretty = True
    assert wants_human(args, io.StringIO())
    args.pretty, args.json_lines = False, True
    assert not wants_human(args, Tty())


def test_the_filter_drops_mxnet_log_lines_and_passes_everything_else():
    """Descriptor 2 written to directly, as C++ does; an unfinished progress line passes."""
    code = (
        "import os, sys; from stream.apps.quiet import StderrFilter\n"
        "f = StderrFilter().start()\n"
        "os.write(2, b'[16:50:18] ../src/operator/quantization/quantize_graph_pass.cc:302: '\n"
        "         b'sg_mkldnn_conv_act_0 is quantized.\\nkept line\\n[not a log] kept too\\n')\n"
        "os.write(2, b'[16:50:19] ../src/executor/graph_executor.cc:1991: Subgraph backend')\n"
        "os.write(2, b' MKLDNN is activated.\\n')\n"
        "print('via sys.stderr', file=sys.stderr)\n"
        "os.write(2, b'\\rprogress 50%')\n"
        "f.stop()\n"
        "os.write(2, b'\\n[16:50:20] ../src/x.cc:1: after the filter\\n')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60,
                          cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 0, done.stderr
    assert done.stderr == (b"kept line\n[not a log] kept too\nvia sys.stderr\n\rprogress 50%\n"
                           b"[16:50:20] ../src/x.cc:1: after the filter\n")


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_int8_detector_start_up_prints_no_mxnet_lines_unless_verbose(tmp_path, monkeypatch):
    """int8 quantization makes MXNet log two C++ lines per layer and a Python deprecation
    warning: the detector keeps them off standard error; ``--verbose`` shows them."""
    weights = make_weights(tmp_path / "tiny")
    seen = {}
    for verbose in (False, True):
        if verbose:    # what --verbose sets for the processes a command starts
            monkeypatch.setenv("VADSTREAM_VERBOSE", "1")
        ready = tmp_path / f"ready-{verbose}.json"
        proc, _ = start_detector(ready, "--model", str(weights), "--device", "cpu",
                                 "--precision", "int8", "--int8-calibration", str(PED2),
                                 "--events-db",
                                 str(tmp_path / "events.sqlite3"),
                                 stderr=subprocess.PIPE, text=True)
        stop(proc)
        seen[verbose] = proc.stderr.read()
    assert _mxnet_noise(seen[False]) == [], seen[False]
    assert "precision int8" in seen[False]           # the detector's own log is still there
    assert any(MXNET_LOG_LINE.match(line.encode()) and "is quantized" in line
               for line in seen[True].splitlines()), seen[True][-2000:]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_demo_on_a_terminal_prints_readable_alerts_and_no_mxnet_messages(tmp_path):
    """``vadstream demo`` with a terminal (a pseudo-terminal) as standard output: one
    readable line per alert of the cyclist in Test001, and a standard error free of
    MXNet's messages."""
    master, slave = pty.openpty()
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "stream.apps.cli", "demo", "--source",
         str(PED2 / "Test" / "Test001"), "--fps", "20", "--device", "cpu", "--no-dashboard",
         "--video", str(tmp_path / "v.mp4")],
        stdout=slave, stderr=subprocess.PIPE, cwd=ROOT, env=env)
    os.close(slave)
    out = b""
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:          # the other end closed: everything was read
                break
            if not chunk:
                break
            out += chunk
        proc.wait(30)
    finally:
        os.close(master)
        stop(proc)
    stderr = proc.stderr.read().decode()
    text = ANSI.sub("", out.decode()).replace("\r\n", "\n")
    assert proc.returncode == 0, text + stderr
    assert not any(line.startswith("{") for line in text.splitlines())   # no JSON
    alerts = [LINE.match(line) for line in text.splitlines() if "event " in line]
    assert alerts and all(alerts), text
    kinds = [m.group(3) for m in alerts]
    assert kinds[0] == "START" and kinds.count("START") == kinds.count("END"), text
    first = alerts[0]
    assert first.group(2) == "demo" and first.group(8).startswith("clip Test001 frame ")
    assert float(first.group(5)) >= float(first.group(7)) and first.group(6) == "≥"
    assert _mxnet_noise(stderr) == [], stderr
