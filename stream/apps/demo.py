"""``vadstream demo``: detector, capture, alert printer and recorder as separate processes."""

from __future__ import annotations

import json
import logging
import queue
import re
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from models.weights import read_meta
from stream.dashboard.config import split_host_port
from stream.defaults import DASHBOARD_HTTP, EVENTS_DB, PED2
from stream.processes import ANY_PORT, Child, stop_all, vadstream_command, wait_ready_file
from stream.wire.subscriber import Subscriber
from stream.wire.topics import AlertMessage, EosMessage, ScoreMessage, StatusMessage

log = logging.getLogger(__name__)
#: What the demo replays by default: the UCSD Ped2 test clips.
DEFAULT_SOURCE = PED2


def dashboard_address(http: str | None) -> str:
    """The dashboard's ``HOST:PORT``: ``http`` as given, else the default one
    (``stream.defaults.DASHBOARD_HTTP``) or, when something already listens there, port 0
    on the same host: ``vadstream serve`` then binds a port of its choosing and prints it
    (:func:`run_demo` reads it)."""
    if http is not None:
        return http
    host, port = split_host_port(DASHBOARD_HTTP)
    with socket.socket() as s:
        try:
            s.bind((host, port))
            return DASHBOARD_HTTP
        except OSError:
            return f"{host}:0"


def _bound_address(dashboard: Child, timeout_s: float) -> str:
    """``HOST:PORT`` from the first line ``vadstream serve`` prints (``dashboard: URL ...``)."""
    lines: queue.Queue[bytes] = queue.Queue()
    threading.Thread(target=lambda: lines.put(dashboard.proc.stdout.readline()),
                     daemon=True).start()
    try:
        line = lines.get(timeout=timeout_s)
    except queue.Empty:
        raise RuntimeError(f"the dashboard did not start within {timeout_s:.0f} s") from None
    match = re.search(r"http://([^/\s]+)/", line.decode(errors="replace"))
    if match is None:
        raise RuntimeError(f"the dashboard did not start: {line.strip()!r}")
    return match.group(1)


@dataclass
class DemoResult:
    """What the demo saw."""

    frames: int = 0
    seconds: float = 0.0
    alerts: list[AlertMessage] = field(default_factory=list)
    eos: EosMessage | None = None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def summary(self, **extra) -> dict:
        return {"frames": self.frames, "fps": round(self.fps, 2),
                "alerts": [a.to_dict() for a in self.alerts], **extra}


def describe_weights(model: str) -> str:
    """One line on what the weights are, from their metadata."""
    meta = read_meta(model)
    p = meta.provenance
    note = p.get("note", "")
    return (f"weights {model}: {meta.model} window {meta.window}, trained {p.get('epochs', '?')} "
            f"epoch(s) on {len(p.get('train_clips', []))} clip(s). {note}").strip()


def _wait_subscribed(sub: Subscriber, topics: list[str], children: list[Child],
                     stop: threading.Event, timeout_s: float = 60.0) -> None:
    """Wait until the detector's status lists ``topics`` among its subscriptions, so the
    alert printer and the recorder miss nothing of the stream."""
    deadline = time.monotonic() + timeout_s
    while not stop.is_set():
        msg = sub.recv(200)
        if isinstance(msg, StatusMessage) and set(topics) <= set(msg.subscriptions or []):
            return
        for child in children:
            if not child.running:
                raise RuntimeError(f"the {child.name} process exited with code {child.poll()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"subscribers did not connect within {timeout_s:.0f} s")


def run_demo(source: str, model: str, video: Path, stream: str = "demo",
             fps: float | None = None, device: str = "auto", stop: threading.Event | None = None,
             ready_timeout_s: float = 120.0, idle_timeout_s: float = 60.0,
             extra_detect_args: list[str] | None = None, http: str | None = None,
             hold: bool = False, printer_args: list[str] | None = None,
             child_args: list[str] | None = None, mqtt: str | None = None) -> DemoResult:
    """Run the whole pipeline on one source until it ends (or ``stop`` is set).

    Args:
        source: Any capture source (default in the CLI: the UCSD Ped2 test clips).
        model: Weights.
        video: Where the overlay MP4 goes.
        stream: Stream id.
        fps: Replay rate (None: the source's own).
        device: Detector device.
        stop: Ends the demo early (Ctrl-C).
        ready_timeout_s: How long the detector may take to start.
        idle_timeout_s: Give up when nothing arrives for this long.
        extra_detect_args: More ``vadstream detect`` flags.
        http: ``HOST:PORT`` of the dashboard (``vadstream serve``) started beside the
            pipeline; None: no dashboard.
        hold: When the source ends, keep the detector and the dashboard up until ``stop``.
        printer_args: Output flags of the alert printer (``vadstream subscribe``), e.g.
            ``["--pretty"]`` (None: it decides by its standard output, the demo's).
        child_args: Global ``vadstream`` flags of every process it starts, e.g.
            ``["--quiet"]`` (their logs: warnings and errors only).
        mqtt: Broker URL (``mqtt://HOST:PORT``) of an MQTT bridge (``vadstream mqtt``)
            started beside the pipeline; None: no bridge.

    Returns:
        Frames scored, time taken, every alert.

    Raises:
        RuntimeError: If the detector does not start or a process fails.
    """
    stop = stop or threading.Event()
    flags = list(child_args or [])

    def command(*args: str) -> list[str]:
        return vadstream_command(*flags, *args)

    print(describe_weights(model), flush=True)
    events_db = str(video.with_name(EVENTS_DB))
    ready = video.with_name("detector.ready.json")
    ready.unlink(missing_ok=True)
    detector = Child("detector", command(
        "detect", "--bind", ANY_PORT, "--publish", ANY_PORT, "--control", ANY_PORT,
        "--ready-file", str(ready),
        "--model", model, "--device", device, "--events-db", events_db,
        *(extra_detect_args or [])))
    children = [detector]
    result = DemoResult()
    sub = None
    try:
        detector.start()
        bound = wait_ready_file(detector, ready, ready_timeout_s)
        bind, publish = bound["bind"], bound["publish"]
        sub = Subscriber(publish, ["alert.", f"score.{stream}", f"eos.{stream}", "status"])
        deadline = time.monotonic() + ready_timeout_s
        while not stop.is_set():
            msg = sub.recv(200)
            if isinstance(msg, StatusMessage):
                break
            if not detector.running:
                raise RuntimeError(f"the detector exited with code {detector.poll()}; "
                                   "run `vadstream detect --verbose` to see why")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the detector did not start within {ready_timeout_s:.0f} s")
        printer = Child("alerts", command("subscribe", "--connect", publish, "--topic", "alert",
                                          *(printer_args or [])))
        recorder = Child("recorder", command(
            "record", "--connect", publish, "--stream", stream, "--out", str(video)))
        helpers, topics = [printer, recorder], ["alert", f"overlay.{stream}"]
        dashboard = None
        if http is not None:
            # port 0: serve picks one and prints it, read below
            dashboard = Child("dashboard", command(
                "serve", "--connect", publish, "--http", http, "--events-db", events_db,
                "--control", bound.get("control", ""), "--supervisor", ""),
                stdout=subprocess.PIPE if http.endswith(":0") else None)
            helpers.append(dashboard)
            topics.append("overlay.")
        if mqtt is not None:
            argv = ["mqtt", "--connect", publish, "--broker", mqtt]
            if bound.get("control"):
                argv += ["--control", bound["control"]]
            helpers.append(Child("mqtt", command(*argv)))
            topics += ["alert.", "score."]
        for child in helpers:
            child.start()
            children.append(child)
        if dashboard is not None and dashboard.stdout is not None:
            http = _bound_address(dashboard, ready_timeout_s)
        _wait_subscribed(sub, topics, children, stop)
        if http is not None:
            print(f"demo: open http://{http}/ in a browser to watch it live", flush=True)
        argv = ["capture", "--source", source, "--stream-id", stream, "--connect", bind]
        if fps is not None:
            argv += ["--fps", str(fps)]
        capture = Child("capture", command(*argv))
        capture.start()
        children.append(capture)
        first = last = None
        idle_since = time.monotonic()
        while not stop.is_set():
            msg = sub.recv(200)
            now = time.monotonic()
            if msg is None:
                if not detector.running:
                    raise RuntimeError(f"the detector exited with code {detector.poll()}")
                if capture.poll() not in (None, 0):
                    raise RuntimeError(f"the capture exited with code {capture.poll()}; "
                                       f"check the source {source!r}")
                if now - idle_since > idle_timeout_s:
                    raise RuntimeError(f"nothing scored for {idle_timeout_s:.0f} s")
                continue
            idle_since = now
            if isinstance(msg, AlertMessage):
                result.alerts.append(msg)
            elif isinstance(msg, ScoreMessage):
                result.frames += 1
                first = first or now
                last = now
            elif isinstance(msg, EosMessage):
                result.eos = msg
                break
        if first is not None and last is not None:
            # Frames over the time between the first and last score, counting the first.
            span = last - first
            result.seconds = span * result.frames / max(1, result.frames - 1) if span else 0.0
        if result.eos is not None:
            try:  # the recorder ends by itself at the end of the stream
                recorder.proc.wait(10)
            except subprocess.TimeoutExpired:
                log.warning("the recorder did not finish the video within 10 s")
            if hold and http is not None:
                print(f"demo: the source ended; the dashboard stays at http://{http}/ until "
                      "Ctrl-C", flush=True)
                while not stop.wait(0.5):
                    if not all(c.running for c in children if c not in (recorder, capture)):
                        raise RuntimeError("a demo process exited while holding")
    finally:
        if sub is not None:
            sub.close()
        stop_all(children)
    return result


def write_summary(path: Path, result: DemoResult, **extra) -> None:
    """Write the ``--json`` summary."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.summary(**extra), indent=2) + "\n")
