"""``vadstream run``: the detector and one capture per camera, kept alive; cameras added
and removed while it runs over its control endpoint (:mod:`stream.apps.cameras`)."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import zmq
from zmq.auth.thread import ThreadAuthenticator

from stream.pipeline import Pipeline, StreamConfig
from stream.processes import Child, stop_all, vadstream_command
from stream.wire.control import ControlServer
from stream.wire.endpoints import connect_endpoint, is_loopback
from stream.wire.security import CurveServer

log = logging.getLogger(__name__)

#: How long the loop waits for a camera request before it looks at its children again.
TICK_S = 0.2


def mqtt_command(pipeline: Pipeline) -> list[str]:
    """The ``vadstream mqtt`` command line of the pipeline's ``mqtt:`` section, connected
    to its detector's topics and control endpoint."""
    detector = pipeline.detector
    control = detector.control
    endpoints = {"connect": pipeline.mqtt.connect or connect_endpoint(detector.publish),
                 "control": pipeline.mqtt.control or (connect_endpoint(control) if control
                                                      else "")}
    if detector.curve_secret_key and not pipeline.mqtt.curve_key:
        log.warning("the detector requires CURVE: give mqtt.curve_key and mqtt.curve_server, "
                    "or the MQTT bridge cannot subscribe nor send commands")
    return vadstream_command("mqtt", *pipeline.mqtt.to_argv(**endpoints))


def capture_command(stream: StreamConfig, connect: str, model: str = "") -> list[str]:
    """The ``vadstream capture`` command line for one configured stream (``model``: the
    detector's, for a stream that fits its frames to its model and names none)."""
    argv = vadstream_command("capture", "--source", stream.source, "--stream-id", stream.id,
                             "--connect", connect, "--encoding", stream.encoding)
    if stream.fit:
        argv += ["--fit", stream.model or model]
    if stream.fps is not None:
        argv += ["--fps", str(stream.fps)]
    if stream.loop:
        argv.append("--loop")
    if stream.curve_key or stream.curve_server:
        argv += ["--curve-key", stream.curve_key, "--curve-server", stream.curve_server]
    return argv


def is_finite(stream: StreamConfig) -> bool:
    """Whether a stream's capture ends by itself (a file or folder replayed once)."""
    return not stream.loop and not stream.source.isdigit() and "://" not in stream.source


class _Watched:
    """A child with its restart schedule (a :class:`stream.apps.cameras.Watched`)."""

    def __init__(self, child: Child, finite: bool, delay: float) -> None:
        self.child = child
        self.finite = finite
        self.done = False
        self.delay = delay
        self.restart_at: float | None = None
        self.started_at = 0.0

    def start(self, now: float) -> None:
        self.child.start()
        self.started_at = now

    def describe(self) -> dict:
        """The capture state the ``streams`` command reports."""
        proc = self.child.proc
        return {"running": self.child.running, "pid": proc.pid if proc else None,
                "restarts": self.child.restarts, "finished": self.done,
                "exit_code": self.child.poll()}


class Supervisor:
    """The detector, the captures and the MQTT bridge (when configured), each restarted
    when it dies (a :class:`stream.apps.cameras.CaptureSupervisor`).

    Args:
        config_path: The pipeline config the detector reads.
        pipeline: That config, loaded.
        extra_detect_args: More ``vadstream detect`` flags.
        on_detector_restart: Called after the detector was started again (it knows only
            the configured streams then).
    """

    def __init__(self, config_path: Path, pipeline: Pipeline,
                 extra_detect_args: list[str] | None = None,
                 on_detector_restart: Callable[[], None] | None = None) -> None:
        self.config = pipeline.supervisor
        self.connect = connect_endpoint(pipeline.detector.bind)
        #: The detector's model: what a fitting capture's stream is scored with by default.
        self.model = pipeline.detector.model
        self.detector = _Watched(
            Child("detector", vadstream_command("detect", "--config", str(config_path),
                                                *(extra_detect_args or []))),
            False, self.config.restart_delay)
        self.captures: dict[str, _Watched] = {}
        #: Processes beside the detector that are not cameras: the MQTT bridge, a separate
        #: process so that the detector never waits on the broker.
        self.services = ([_Watched(Child("mqtt", mqtt_command(pipeline)), False,
                                   self.config.restart_delay)]
                         if pipeline.mqtt.active else [])
        if pipeline.adapt.auto:   # low priority, its own process (stream.adapt.AdaptConfig)
            self.services.append(_Watched(Child("adapt", vadstream_command(
                "adapt", "--watch", "--config", str(config_path))), False,
                self.config.restart_delay))
        self.on_detector_restart = on_detector_restart

    def start(self) -> None:
        """Start the detector and the services."""
        now = time.monotonic()
        for w in (self.detector, *self.services):
            w.start(now)

    def add_capture(self, stream: StreamConfig) -> _Watched:
        """Start (and from now on supervise) the capture of ``stream``."""
        watched = _Watched(Child(f"capture {stream.id}",
                                 capture_command(stream, self.connect, self.model)),
                           is_finite(stream), self.config.restart_delay)
        self.captures[stream.id] = watched
        watched.start(time.monotonic())
        return watched

    def remove_capture(self, stream: str, timeout_s: float = 10.0) -> int | None:
        """Stop the capture of ``stream`` (gently: it sends its end) and forget it; its
        exit code."""
        watched = self.captures.pop(stream)
        return watched.child.stop(signal.SIGINT, timeout_s)

    def step(self, now: float) -> None:
        """Restart what died (after its delay); a finished finite capture stays ended."""
        for w in [self.detector, *self.services, *self.captures.values()]:
            if w.done:
                continue
            if w.restart_at is not None:
                if now >= w.restart_at:
                    w.restart_at = None
                    w.child.restarts += 1
                    log.warning("restarting %s (restart %d)", w.child.name, w.child.restarts)
                    w.start(now)
                    if w is self.detector and self.on_detector_restart is not None:
                        self.on_detector_restart()
                continue
            code = w.child.poll()
            if code is None:
                continue
            if code == 0 and w.finite:
                log.info("%s finished its source", w.child.name)
                w.done = True
                continue
            if now - w.started_at > 60:
                w.delay = self.config.restart_delay  # it had been healthy: start over
            log.error("%s exited with code %s; restarting in %.1f s", w.child.name, code,
                      w.delay)
            w.restart_at = now + w.delay
            w.delay = min(self.config.max_delay, w.delay * 2)

    def stop(self) -> None:
        """Stop the captures and services, then the detector."""
        stop_all([self.detector.child, *(w.child for w in self.services),
                  *(w.child for w in self.captures.values())])


def supervise(config_path: Path, pipeline: Pipeline, stop: threading.Event,
              extra_detect_args: list[str] | None = None) -> None:
    """Run the pipeline until ``stop`` is set; restart any process that dies; answer
    camera requests on ``supervisor.control``.

    A finite, non-looping capture that ends normally (exit code 0) is not restarted.
    """
    from stream.apps.cameras import Cameras

    cameras: Cameras | None = None
    sup = Supervisor(config_path, pipeline, extra_detect_args,
                     on_detector_restart=lambda: cameras.detector_restarted())
    cameras = Cameras(sup, pipeline)
    cameras.start()
    # bound first: a port in use stops `vadstream run` before it starts anything
    auth, server = control_server(pipeline, cameras.handlers)
    try:
        if server is not None:
            log.info("camera requests (streams, add, remove) on %s", server.endpoint)
        sup.start()
        for s in pipeline.streams:
            sup.add_capture(s)
        log.info("running %d stream(s); detector frames on %s, topics on %s",
                 len(sup.captures) + len(cameras.pending), pipeline.detector.bind,
                 pipeline.detector.publish)
        while not stop.is_set():
            if server is None:
                stop.wait(TICK_S)
            elif server.socket.poll(int(TICK_S * 1000)):
                server.serve_pending()
            sup.step(time.monotonic())
            cameras.resync()
    finally:
        if server is not None:
            server.close()
        if auth is not None:
            auth.stop()
        sup.stop()


def control_server(pipeline: Pipeline, handlers: dict
                   ) -> tuple[ThreadAuthenticator | None, ControlServer | None]:
    """The supervisor's control endpoint (None without ``supervisor.control``): behind the
    detector's CURVE keys when it has them, admitting the clients the detector admits.

    Returns:
        The CURVE authenticator (to stop with the server; None without CURVE) and the
        server.
    """
    bind = pipeline.supervisor.control
    if not bind:
        return None, None
    detector = pipeline.detector
    curve = (CurveServer(detector.curve_secret_key, detector.curve_allowed)
             if detector.curve_secret_key else None)
    if curve is None and not is_loopback(bind):
        log.warning("supervisor.control %s is reachable beyond this machine and "
                    "unauthenticated: anyone who reaches it can add cameras (any source); "
                    "bind it to 127.0.0.1 or turn on CURVE (detector.curve_secret_key, "
                    "curve_allowed)", bind)
    if curve is not None and detector.control and not pipeline.supervisor.curve_key:
        log.warning("the detector requires CURVE: give supervisor.curve_key and "
                    "supervisor.curve_server, or cameras added while running cannot be "
                    "configured on it")
    context = zmq.Context.instance()
    auth = curve.start(context) if curve is not None else None
    try:
        return auth, ControlServer(bind, handlers, context, curve)
    except BaseException:
        if auth is not None:
            auth.stop()
        raise
