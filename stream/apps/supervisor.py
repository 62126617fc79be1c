"""``vadstream run``: the detector and one capture per configured stream, kept alive."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from stream.apps.processes import Child, stop_all, vadstream_command
from stream.pipeline import Pipeline, StreamConfig

log = logging.getLogger(__name__)


def connect_endpoint(bind: str) -> str:
    """The endpoint a local client connects to for a bound endpoint (``*`` -> loopback)."""
    return bind.replace("://*:", "://127.0.0.1:").replace("://0.0.0.0:", "://127.0.0.1:")


def mqtt_command(pipeline: Pipeline) -> list[str]:
    """The ``vadstream mqtt`` command line of the pipeline's ``mqtt:`` section, connected
    to its detector's topics and control endpoint."""
    detector = pipeline.detector
    control = getattr(detector, "control", "")
    endpoints = {"connect": pipeline.mqtt.connect or connect_endpoint(detector.publish),
                 "control": pipeline.mqtt.control or (connect_endpoint(control) if control
                                                      else "")}
    if detector.curve_secret_key and not pipeline.mqtt.curve_key:
        log.warning("the detector requires CURVE: give mqtt.curve_key and mqtt.curve_server, "
                    "or the MQTT bridge cannot subscribe")
    return vadstream_command("mqtt", *pipeline.mqtt.to_argv(**endpoints))


def capture_command(stream: StreamConfig, connect: str) -> list[str]:
    """The ``vadstream capture`` command line for one configured stream."""
    argv = vadstream_command("capture", "--source", stream.source, "--stream-id", stream.id,
                             "--connect", connect, "--encoding", stream.encoding)
    if stream.fps is not None:
        argv += ["--fps", str(stream.fps)]
    if stream.loop:
        argv.append("--loop")
    if stream.curve_key or stream.curve_server:
        argv += ["--curve-key", stream.curve_key, "--curve-server", stream.curve_server]
    return argv


class _Watched:
    """A child with its restart schedule."""

    def __init__(self, child: Child, finite: bool, delay: float) -> None:
        self.child = child
        self.finite = finite
        self.done = False
        self.delay = delay
        self.restart_at: float | None = None
        self.started_at = 0.0


def supervise(config_path: Path, pipeline: Pipeline, stop: threading.Event,
              extra_detect_args: list[str] | None = None) -> None:
    """Run the pipeline until ``stop`` is set; restart any process that dies.

    A finite, non-looping capture that ends normally (exit code 0) is not restarted.
    """
    sup = pipeline.supervisor
    detect = Child("detector", vadstream_command("detect", "--config", str(config_path),
                                                 *(extra_detect_args or [])))
    connect = connect_endpoint(pipeline.detector.bind)
    watched = [_Watched(detect, False, sup.restart_delay)]
    for s in pipeline.streams:
        finite = not s.loop and not s.source.isdigit() and "://" not in s.source
        watched.append(_Watched(Child(f"capture {s.id}", capture_command(s, connect)),
                                finite, sup.restart_delay))
    if pipeline.mqtt.active:   # a separate process: the detector never waits on the broker
        watched.append(_Watched(Child("mqtt", mqtt_command(pipeline)), False,
                                sup.restart_delay))
    for w in watched:
        w.child.start()
        w.started_at = time.monotonic()
    log.info("running %d stream(s); detector frames on %s, topics on %s",
             len(pipeline.streams), pipeline.detector.bind, pipeline.detector.publish)
    try:
        while not stop.wait(0.2):
            now = time.monotonic()
            for w in watched:
                if w.done:
                    continue
                if w.restart_at is not None:
                    if now >= w.restart_at:
                        w.restart_at = None
                        w.child.restarts += 1
                        log.warning("restarting %s (restart %d)", w.child.name, w.child.restarts)
                        w.child.start()
                        w.started_at = now
                    continue
                code = w.child.poll()
                if code is None:
                    continue
                if code == 0 and w.finite:
                    log.info("%s finished its source", w.child.name)
                    w.done = True
                    continue
                if now - w.started_at > 60:
                    w.delay = sup.restart_delay  # it had been healthy: start over
                log.error("%s exited with code %s; restarting in %.1f s", w.child.name, code,
                          w.delay)
                w.restart_at = now + w.delay
                w.delay = min(sup.max_delay, w.delay * 2)
    finally:
        stop_all([w.child for w in watched])
