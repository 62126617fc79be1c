"""A detector shard: ``vadstream detect`` and its cameras' captures, on one node.

Frames move from the captures to the detector over ZeroMQ on this node's loopback;
what leaves the node through Ray is small: alerts (read back from the detector's own
events store, so none published is missed), scores and status, in one batch every
``forward_s`` to the event sink.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import ray
import yaml
import zmq

from stream.cluster.children import spawn, stop, vadstream_argv

log = logging.getLogger(__name__)

#: Any free loopback port: the detector reports what it bound in its ready file.
ANY_PORT = "tcp://127.0.0.1:*"


def capture_argv(stream: dict, connect: str) -> list[str]:
    """``vadstream capture`` for one ``streams:`` entry (as a dict)."""
    argv = vadstream_argv("capture", "--source", stream["source"], "--stream-id", stream["id"],
                          "--connect", connect, "--encoding", stream.get("encoding", "raw"))
    if stream.get("fps") is not None:
        argv += ["--fps", str(stream["fps"])]
    if stream.get("loop"):
        argv.append("--loop")
    return argv


class Shard:
    """One node's detector and captures, kept to the cameras the coordinator assigns.

    Args:
        name: The shard's name (its Ray actor name).
        sections: The pipeline's sections (detector, scorer, events, annotator).
        workdir: Folder for this shard's config, logs and local events store.
        device: The detector's device.
        sink: The event sink's actor handle.
        forward_s: Seconds between batches to the sink.
    """

    def __init__(self, name: str, sections: dict, workdir: str, device: str, sink,
                 forward_s: float = 0.5) -> None:
        self.name = name
        self.node_id = ray.get_runtime_context().get_node_id()
        self.dir = Path(workdir).resolve() / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.sink = sink
        self.forward_s = forward_s
        self.sections, self.device = sections, device
        self.config = self.dir / "pipeline.yaml"
        self.wanted: dict[str, dict] = {}
        self.loaded: dict[str, dict] = {}  # entries with their own model, in the detector
        self.models: dict[str, str] = {}   # camera -> the weights it is scored with (status)
        self.measured = (0, 0.0)   # frames scored, seconds in the network: all detectors
        self._last_status: tuple[dict[str, int], float] = ({}, 0.0)
        self.lock = threading.Lock()
        self.detector: subprocess.Popen | None = None
        self.endpoints: dict = {}
        self.captures: dict[str, subprocess.Popen] = {}
        self.scored: dict[str, int] = {}
        self.cursor = 0
        self.restarts = 0
        self.stopping = threading.Event()
        self.assigned = threading.Event()   # the detector starts with its cameras' models
        # Every child is started from this one thread, so they die with it (PDEATHSIG).
        self.keeper = threading.Thread(target=self._keep, name=f"{name}-keeper", daemon=True)
        self.keeper.start()

    def _write_config(self, streams: list[dict]) -> None:
        """The detector's config: the pipeline's sections, this node's endpoints, and
        ``streams``: the entries of the cameras with their own ``model`` (the others are
        admitted as unlisted streams and run ``detector.model``)."""
        data = {k: dict(v or {}) for k, v in self.sections.items()}
        det = data.setdefault("detector", {})
        det.update(bind=ANY_PORT, publish=ANY_PORT, control=ANY_PORT, device=self.device,
                   events_db=str(self.dir / "events.sqlite3"), allow_unknown=True)
        data["streams"] = streams
        self.config.write_text(yaml.safe_dump(data))

    def _own_models(self) -> dict[str, dict]:
        with self.lock:
            return {c: s for c, s in self.wanted.items() if s.get("model")}

    def _needs_reload(self) -> bool:
        """A camera assigned since the detector started has a model it has not loaded."""
        return any(self.loaded.get(c, {}).get("model") != s["model"]
                   for c, s in self._own_models().items())

    # -- called by the coordinator -------------------------------------------------------
    def assign(self, streams: list[dict]) -> dict:
        """Run exactly these cameras (``streams:`` entries).

        Returns:
            This shard's :meth:`info` (its endpoints and measured capacity among it).
        """
        with self.lock:
            self.wanted = {s["id"]: s for s in streams}
        self.assigned.set()
        return self.info()

    def info(self) -> dict:
        """Node, cameras, processes, endpoints, each camera's model, and ``capacity_fps``:
        the frames/s its detector scores per second of network time (None: not measured
        yet), which the coordinator balances cameras by."""
        frames, seconds = self.measured
        with self.lock:
            return {"name": self.name, "node": self.node_id, "cameras": sorted(self.wanted),
                    "running": sorted(s for s, p in self.captures.items() if p.poll() is None),
                    "detector_pid": None if self.detector is None else self.detector.pid,
                    "endpoints": dict(self.endpoints), "scored": dict(self.scored),
                    "models": dict(self.models), "detector_restarts": self.restarts,
                    "capacity_fps": round(frames / seconds, 1) if seconds >= 1.0 else None}

    def pid(self) -> int:
        """The shard worker's process id (the tests kill it)."""
        return os.getpid()

    def shutdown(self) -> None:
        """Stop the captures, then the detector (it closes its open events)."""
        self.stopping.set()
        self.keeper.join(30)

    # -- the keeper thread ---------------------------------------------------------------
    def _keep(self) -> None:
        sub = None
        try:
            while not (self.assigned.is_set() or self.stopping.wait(0.1)):
                pass
            while not self.stopping.is_set():
                if (self.detector is None or self.detector.poll() is not None
                        or self._needs_reload()):
                    if sub is not None:
                        sub.close(0)
                        sub = None
                    self._start_detector()
                    sub = self._subscribe()
                self._match_captures()
                self._forward(sub)
                self.stopping.wait(self.forward_s)
        except Exception:   # noqa: BLE001 - a shard that cannot keep its cameras exits,
            log.exception("shard %s failed; exiting for Ray to restart it", self.name)
            os._exit(1)     # and Ray restarts it (max_restarts), children and all
        finally:
            for proc in self.captures.values():
                stop(proc)
            stop(self.detector)
            self._forward(sub)
            if sub is not None:
                sub.close(0)

    def _start_detector(self) -> None:
        for proc in self.captures.values():
            stop(proc)
        self.captures = {}
        if self.detector is not None and self.detector.poll() is None:
            log.info("shard %s: restarting the detector for new cameras' models", self.name)
            stop(self.detector)
        elif self.detector is not None:
            self.restarts += 1
            log.warning("shard %s: detector exited (%s); restarting", self.name,
                        self.detector.returncode)
        # Models loaded before stay: a camera that moves back needs no second restart.
        self.loaded.update(self._own_models())
        self._write_config(list(self.loaded.values()))
        ready = self.dir / "ready.json"
        ready.unlink(missing_ok=True)
        self.detector = spawn(vadstream_argv("detect", "--config", str(self.config),
                                             "--ready-file", str(ready)),
                              str(self.dir / "detector.log"))
        deadline = time.monotonic() + 120
        while not ready.is_file():
            if self.detector.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"shard {self.name}: the detector did not start; see "
                                   f"{self.dir / 'detector.log'}")
            time.sleep(0.1)
        with self.lock:
            self.endpoints = json.loads(ready.read_text())

    def _subscribe(self) -> zmq.Socket:
        sub = zmq.Context.instance().socket(zmq.SUB)
        sub.setsockopt(zmq.RCVHWM, 100000)
        for topic in (b"score.", b"status"):
            sub.setsockopt(zmq.SUBSCRIBE, topic)
        sub.connect(self.endpoints["publish"])
        return sub

    def _match_captures(self) -> None:
        with self.lock:
            wanted = dict(self.wanted)
        for sid in list(self.captures):
            if sid not in wanted:
                stop(self.captures.pop(sid))
        for sid, stream in wanted.items():
            proc = self.captures.get(sid)
            if proc is None or proc.poll() is not None:
                self.captures[sid] = spawn(capture_argv(stream, self.endpoints["bind"]),
                                           str(self.dir / f"capture-{sid}.log"))

    def _forward(self, sub: zmq.Socket | None) -> None:
        """Send new alerts, scores and the latest status to the sink (alerts resent until
        the sink has them)."""
        scores, status = [], None
        while sub is not None:
            try:
                topic, body = sub.recv_multipart(zmq.NOBLOCK)[:2]
            except zmq.Again:
                break
            msg = json.loads(body)
            if topic == b"status":
                status = msg
                self._measure(msg)
            else:
                scores.append(msg)
                with self.lock:
                    self.scored[msg["stream"]] = self.scored.get(msg["stream"], 0) + 1
        rows = self._new_alerts()
        if not (rows or scores or status):
            return
        try:
            ray.get(self.sink.ingest.remote(self.name, [a for _, a in rows], scores, status),
                    timeout=30)
        except Exception:   # noqa: BLE001 - the sink restarts; the alerts are resent
            log.exception("shard %s: the event sink did not take a batch", self.name)
            return
        if rows:
            self.cursor = rows[-1][0]

    def _measure(self, status: dict) -> None:
        """Add what the detector scored, and its network time, since its last status."""
        streams = status.get("streams", {})
        scored = {c: s["scored"] for c, s in streams.items() if "scored" in s}
        seconds = status.get("inference", {}).get("seconds", 0.0)
        before, before_s = self._last_status
        if seconds < before_s:   # a new detector: its counters start again
            before, before_s = {}, 0.0
        frames = sum(max(0, n - before.get(c, 0)) for c, n in scored.items())
        self._last_status = (scored, seconds)
        with self.lock:
            self.measured = (self.measured[0] + frames, self.measured[1] + seconds - before_s)
            self.models = {c: s["model"] for c, s in streams.items() if "model" in s}

    def _new_alerts(self) -> list[tuple[int, dict]]:
        db = self.dir / "events.sqlite3"
        if not db.is_file():
            return []
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            rows = con.execute("SELECT seqno, payload FROM alerts WHERE seqno > ? ORDER BY "
                               "seqno", (self.cursor,)).fetchall()
        except sqlite3.OperationalError:   # not created yet
            rows = []
        finally:
            con.close()
        return [(seqno, json.loads(payload)) for seqno, payload in rows]
