"""Cameras added and removed while ``vadstream run`` runs: the supervisor's control
commands ``streams``, ``add`` and ``remove`` (:mod:`stream.wire.control`).

An added camera is told to the detector (``configure``: its model, threshold, detection
and mask) before its capture starts, so its first frame is scored as asked; a removed one's
capture is stopped, then the detector ends it. With ``supervisor.streams_file`` the added
cameras are written there and started again by the next ``vadstream run``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import yaml

from stream.config import ConfigError, build
from stream.pipeline import Pipeline, StreamConfig
from stream.processes import Child
from stream.wire.control import ControlClient, ControlError, NoReplyError, RequestError
from stream.wire.endpoints import connect_endpoint
from stream.wire.security import client_from_args

log = logging.getLogger(__name__)


class Watched(Protocol):
    """A supervised process as the camera commands read it."""

    child: Child

    def describe(self) -> dict:
        """Its state: running, pid, restarts, finished, exit code."""
        ...


class CaptureSupervisor(Protocol):
    """What the camera commands need of the supervisor that keeps the processes alive
    (:class:`stream.apps.supervisor.Supervisor` is one; it builds :class:`Cameras`, so
    this module does not import it)."""

    @property
    def detector(self) -> Watched: ...

    @property
    def captures(self) -> Mapping[str, Watched]: ...

    def add_capture(self, stream: StreamConfig) -> Watched: ...

    def remove_capture(self, stream: str, timeout_s: float = 10.0) -> int | None: ...

#: How long the detector may take to configure a stream (a model of its own loads weights).
CONFIGURE_TIMEOUT_S = 60.0
#: How long the detector may take to end a stream.
END_TIMEOUT_S = 15.0
#: Between attempts to configure cameras on a (re)starting detector, and each one's wait.
RESYNC_EVERY_S, RESYNC_TIMEOUT_S = 1.0, 0.5


def entry(stream: StreamConfig) -> dict:
    """A stream as a ``streams:`` entry: its keys that differ from the defaults."""
    out = {}
    for f in dataclasses.fields(stream):
        value = getattr(stream, f.name)
        if f.name in ("id", "source") or value != f.default:
            out[f.name] = json.loads(json.dumps(value))   # tuples as lists, for YAML
    return out


def detector_settings(stream: StreamConfig) -> dict:
    """The detector's ``configure`` arguments for ``stream``."""
    return {"stream": stream.id, "model": stream.model, "threshold": stream.threshold,
            "detect": stream.detect, "mask": json.loads(json.dumps(stream.mask))}


class Cameras:
    """The supervisor's camera commands (``handlers`` by name).

    Args:
        supervisor: Starts, watches and stops the captures.
        pipeline: The config ``vadstream run`` read: its streams are the configured
            cameras, ``detector.control`` where the detector is told, and
            ``supervisor.streams_file`` where added cameras are kept.
    """

    def __init__(self, supervisor: CaptureSupervisor, pipeline: Pipeline) -> None:
        self.supervisor = supervisor
        self.configured = {s.id: s for s in pipeline.streams}
        self._in_config = dict(self.configured)   # as the config (and the detector) has them
        control = pipeline.detector.control
        self.detector_control = connect_endpoint(control)
        self.curve = client_from_args(pipeline.supervisor.curve_key or None,
                                      pipeline.supervisor.curve_server or None)
        self.streams_file = (Path(pipeline.supervisor.streams_file)
                             if pipeline.supervisor.streams_file else None)
        #: Cameras added while running (or read from the streams file), by id.
        self.added: dict[str, StreamConfig] = {}
        #: Added cameras the detector is still to be told of; True: start the capture then.
        self.pending: dict[str, bool] = {}
        self._last_try = 0.0
        # ``state`` as the detector names it: a health check asks both the same way.
        self.handlers = {"streams": self.streams, "state": self.streams, "add": self.add,
                         "remove": self.remove}

    # -- start and restarts ---------------------------------------------------------------
    def start(self) -> None:
        """Take the streams file's cameras: each starts once the detector has it."""
        for stream in self.load():
            if stream.id in self.configured:
                raise ConfigError(f"{self.streams_file}: stream {stream.id!r} is also under "
                                  "streams: in the config; remove it from one of them")
            self.added[stream.id] = stream
            self.pending[stream.id] = True

    def load(self) -> list[StreamConfig]:
        """The cameras in the streams file (none when there is no file yet).

        Raises:
            ConfigError: Naming the file and the entry's bad key.
        """
        if self.streams_file is None or not self.streams_file.is_file():
            return []
        name = str(self.streams_file)
        try:
            data = yaml.safe_load(self.streams_file.read_text()) or []
        except yaml.YAMLError as err:
            raise ConfigError(f"{name} is not valid YAML: {err}") from err
        if not isinstance(data, list):
            raise ConfigError(f"{name} must be a list of stream entries (id, source, ...)")
        streams = [build(StreamConfig, s, f"{name}: [{i}]") for i, s in enumerate(data)]
        ids = [s.id for s in streams]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"{name}: stream ids must be unique, got {ids}")
        return streams

    def save(self) -> None:
        """Rewrite the streams file with the added cameras (atomically)."""
        if self.streams_file is None:
            return
        tmp = self.streams_file.with_name(f".{self.streams_file.name}.tmp")
        tmp.write_text("# cameras added while `vadstream run` ran; edit, or add and remove "
                       "them live\n" + yaml.safe_dump([entry(s) for s in self.added.values()],
                                                     sort_keys=False))
        os.replace(tmp, self.streams_file)

    def detector_restarted(self) -> None:
        """A new detector knows only the configured streams: tell it the added ones, and
        the configured ones added again with other settings."""
        for stream in self.added:
            self.pending.setdefault(stream, False)
        for stream, config in self.configured.items():
            if config != self._in_config.get(stream) and stream in self.supervisor.captures:
                self.pending.setdefault(stream, False)

    def resync(self) -> None:
        """Tell the detector of the pending cameras (at most one try a second, each short:
        the supervisor's loop goes on meanwhile); start the captures that waited for it."""
        now = time.monotonic()
        if not self.pending or now - self._last_try < RESYNC_EVERY_S:
            return
        self._last_try = now
        for stream_id, start in list(self.pending.items()):
            stream = self.added.get(stream_id) or (None if start else
                                                   self.configured.get(stream_id))
            if stream is None:
                self.pending.pop(stream_id)
                continue
            try:
                self._configure(stream, RESYNC_TIMEOUT_S)
            except NoReplyError:
                return   # not up yet: the next try
            except ControlError as err:
                log.error("the detector refused camera %s: %s; fix it in %s or add it again",
                          stream_id, err, self.streams_file)
                self.pending.pop(stream_id)
                if start:
                    self.added.pop(stream_id)
                continue
            self.pending.pop(stream_id)
            if start:
                self.supervisor.add_capture(stream)
                log.warning("camera %s started (from %s)", stream_id, self.streams_file)
            else:
                log.warning("camera %s configured on the restarted detector", stream_id)

    # -- commands --------------------------------------------------------------------------
    def _client(self, timeout_s: float) -> ControlClient:
        if not self.detector_control:
            raise RequestError("detector.control is \"\" in the config: the detector takes no "
                               "live changes; set it (e.g. tcp://127.0.0.1:5557) to add and "
                               "remove cameras")
        if self.detector_control.endswith(":*"):
            raise RequestError(f"detector.control {self.detector_control} has no fixed port; "
                               "give it one to add and remove cameras")
        return ControlClient(self.detector_control, timeout_s, curve=self.curve)

    def _configure(self, stream: StreamConfig, timeout_s: float) -> dict:
        with self._client(timeout_s) as client:
            return client.request("configure", **detector_settings(stream))

    def _describe(self, stream: StreamConfig) -> dict:
        watched = self.supervisor.captures.get(stream.id)
        capture = (watched.describe() if watched is not None else
                   {"running": False, "pid": None, "restarts": 0, "finished": False,
                    "exit_code": None})
        return {**entry(stream), "added": stream.id in self.added,
                "pending": stream.id in self.pending, **capture}

    def streams(self) -> dict:
        """The cameras: each one's entry and capture state (running, restarts, finished)."""
        cameras = {**self.configured, **self.added}
        running = {s: cameras[s] for s in self.supervisor.captures}
        waiting = {s: cameras[s] for s in self.pending if s in cameras}
        return {"streams": [self._describe(s) for s in {**running, **waiting}.values()]}

    def add(self, stream: dict) -> dict:
        """Add a camera: ``stream`` is a ``streams:`` entry (id, source, fps, ...)."""
        if not isinstance(stream, dict):
            raise RequestError(f"stream must be a streams: entry (a JSON object with id and "
                               f"source), got {stream!r}")
        config = build(StreamConfig, stream, "add: stream")
        if config.id in self.supervisor.captures or config.id in self.pending:
            raise RequestError(f"stream {config.id!r} is already a camera here (running, or "
                               "its source finished); remove it first or pick another id")
        if not self.supervisor.detector.child.running:   # its restart waits for this loop
            raise RequestError("the detector is not running (it is being restarted: see "
                               "`vadstream run`'s log); add the camera again in a moment")
        try:
            settings = self._configure(config, CONFIGURE_TIMEOUT_S)
        except NoReplyError as err:
            raise RequestError(f"the detector did not answer at {self.detector_control}: "
                               f"{err}") from None
        except ControlError as err:
            raise RequestError(f"the detector refused {config.id!r}: {err}") from None
        if config.id in self.configured:
            self.configured[config.id] = config   # back, as now asked
        else:
            self.added[config.id] = config
        self.supervisor.add_capture(config)
        self.save()
        log.warning("camera %s added: %s", config.id, json.dumps(entry(config)))
        return {**self._describe(config), "detector": settings}

    def remove(self, stream: str) -> dict:
        """Remove a camera: stop its capture, then end it in the detector."""
        if stream not in self.supervisor.captures and stream not in self.pending:
            raise RequestError(f"no camera {stream!r} is running; running: "
                               f"{', '.join(sorted(self.supervisor.captures)) or 'none'}")
        self.pending.pop(stream, None)
        code = (self.supervisor.remove_capture(stream) if stream in self.supervisor.captures
                else None)
        self.added.pop(stream, None)
        self.save()
        try:
            with self._client(END_TIMEOUT_S) as client:
                ended = client.end_stream(stream)
        except (ControlError, RequestError) as err:
            log.error("camera %s: its capture stopped, but the detector did not end it: %s",
                      stream, err)
            ended = {"stream": stream, "error": str(err)}
        configured = stream in self.configured
        log.warning("camera %s removed (capture exit code %s)%s", stream, code,
                    "; it is in the config's streams: and comes back at the next start"
                    if configured else "")
        return {"stream": stream, "capture_exit_code": code, "configured": configured,
                "detector": ended}
