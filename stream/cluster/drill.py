"""``vadstream cluster drill``: kill a node of a local Ray cluster and measure failover.

Everything runs on this machine, on loopback: a head and ``nodes - 1`` workers (one CPU
each), a shard per node, ``streams`` Ped2 test clips replayed as live cameras. After
``kill_after`` seconds one worker node's raylet and every process under it are
SIGKILLed; the drill then measures how long its cameras took to score again elsewhere,
and whether every alert published (on the sink's endpoint) is in the events store.
"""

from __future__ import annotations

import os

# Ray picks this machine's outward address unless told otherwise: keep it on loopback.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import json  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import ray  # noqa: E402
import zmq  # noqa: E402

from stream.cluster import launch  # noqa: E402
from stream.cluster.config import ClusterConfig  # noqa: E402
from stream.cluster.sink import alert_key  # noqa: E402
from stream.defaults import PED2, STAE_WEIGHTS  # noqa: E402
from stream.pipeline import StreamConfig  # noqa: E402
from stream.store import EventStore  # noqa: E402
from stream.wire.endpoints import free_loopback_port  # noqa: E402

log = logging.getLogger(__name__)

#: Ray's node health checks, quick enough to see a dead node within about 2 s.
HEALTH = {"health_check_period_ms": 500, "health_check_failure_threshold": 4,
          "health_check_initial_delay_ms": 0}


def descendants(pid: int) -> list[int]:
    """Every process under ``pid`` (from /proc), deepest last."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def start_local_cluster(nodes: int):
    """A head and ``nodes - 1`` workers on loopback, one CPU each (no dashboard)."""
    from ray.cluster_utils import Cluster

    args = dict(num_cpus=1, node_ip_address="127.0.0.1", include_dashboard=False,
                object_store_memory=80 * 1024 * 1024)
    cluster = Cluster(initialize_head=True, head_node_args={**args, "_system_config": HEALTH})
    for _ in range(nodes - 1):
        cluster.add_node(**args)
    cluster.wait_for_nodes()
    return cluster


def kill_node(cluster, node) -> list[int]:
    """SIGKILL a node's raylet and every process under it (its workers, their children)."""
    raylet = node.all_processes["raylet"][0].process.pid
    pids = [raylet, *descendants(raylet)]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    cluster.remove_node(node, allow_graceful=False)   # its bookkeeping; all dead already
    return pids


@dataclass
class Watch:
    """Scores and alerts as a subscriber of the sink's endpoint sees them."""

    endpoint: str
    scores: dict[str, list[float]] = field(default_factory=dict)
    alerts: set = field(default_factory=set)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        sub = zmq.Context.instance().socket(zmq.SUB)
        sub.setsockopt(zmq.RCVHWM, 100000)
        for topic in (b"score.", b"alert."):
            sub.setsockopt(zmq.SUBSCRIBE, topic)
        sub.connect(self.endpoint)
        poller = zmq.Poller()
        poller.register(sub, zmq.POLLIN)
        while not self.stop.is_set():
            if not poller.poll(200):
                continue
            topic, body = sub.recv_multipart()[:2]
            msg = json.loads(body)
            if topic.startswith(b"score."):
                self.scores.setdefault(msg["stream"], []).append(time.time())
            else:
                self.alerts.add(alert_key(msg))
        sub.close(0)


def drill(nodes: int = 3, streams: int = 4, kill_after: float = 20.0, after_s: float = 20.0,
          model: str = str(STAE_WEIGHTS), fps: float = 5.0, workdir: str | None = None,
          timeout_s: float = 240.0) -> dict:
    """Run the drill and return its report (see the module's docstring).

    Raises:
        ValueError: Fewer than 2 nodes, or no stream.
        RuntimeError: When the cameras do not all score within ``timeout_s``.
    """
    if nodes < 2 or streams < 1:
        raise ValueError("the drill needs --nodes >= 2 (one to kill) and --streams >= 1")
    clips = sorted(p for p in (PED2 / "Test").iterdir() if p.is_dir() and "_gt" not in p.name)
    if not clips:
        raise FileNotFoundError(f"no Ped2 test clips in {PED2 / 'Test'}")
    work = Path(workdir or tempfile.mkdtemp(prefix="vadstream-drill-"))
    work.mkdir(parents=True, exist_ok=True)
    publish = f"tcp://127.0.0.1:{free_loopback_port()}"   # the sink binds it later
    config = ClusterConfig(address="drill", publish=publish, events_db=str(work / "events.db"),
                           workdir=str(work / "shards"), device="cpu", reconcile_s=0.5,
                           namespace="vadstream-drill")
    cams = tuple(StreamConfig(id=f"cam{i}", source=str(clips[i % len(clips)]), fps=fps,
                              loop=True) for i in range(streams))
    sections = {"detector": {"model": model, "device": "cpu", "precision": "fp32"}}
    t0 = time.monotonic()
    cluster = start_local_cluster(nodes)
    watch = None
    try:
        ray.init(address=cluster.address, namespace=config.namespace, log_to_driver=False,
                 configure_logging=False)
        coordinator, sink = launch.start(config, cams, sections, cluster.head_node.node_id)
        watch = Watch(publish)
        threading.Thread(target=watch.run, daemon=True).start()
        _wait(lambda: len(watch.scores) == streams, timeout_s, "every camera scoring")
        log.info("all %d cameras scoring after %.1f s", streams, time.monotonic() - t0)
        time.sleep(kill_after)
        before = ray.get(coordinator.node_of.remote())
        driver = ray.get_runtime_context().get_node_id()   # killing it would end the drill
        victims = {n.node_id: n for n in cluster.worker_nodes if n.node_id != driver}
        load = {nid: sum(1 for v in before.values() if v == nid) for nid in victims}
        victim = max(load, key=lambda nid: (load[nid], nid))
        killed_at = time.time()
        pids = kill_node(cluster, victims[victim])
        log.info("killed node %s (%d processes)", victim[:8], len(pids))
        moved = [c for c, n in before.items() if n == victim]
        _wait(lambda: all(_scored_since(watch, c, killed_at) for c in moved), 120,
              "the killed node's cameras scoring again")
        recovery = max((_first_since(watch, c, killed_at) for c in moved), default=killed_at)
        time.sleep(after_s)
        after = ray.get(coordinator.node_of.remote())
        stop_at = time.time()   # scores flushed while the shards stop are not a gap
        launch.stop(coordinator, sink)
        time.sleep(1.0)   # the last alerts reach the subscriber
    finally:
        if watch is not None:
            watch.stop.set()
        ray.shutdown()
        cluster.shutdown()
    with EventStore(config.events_db) as store:
        stored = {alert_key(a) for a in store.query()}
    report = {"nodes": nodes, "killed_node": victim, "killed_pids": len(pids),
              "streams": {c.id: _stream_report([t for t in watch.scores.get(c.id, [])
                                                if t <= stop_at], killed_at,
                                               before.get(c.id), after.get(c.id))
                          for c in cams},
              "alerts_published": len(watch.alerts), "alerts_stored": len(stored),
              "alerts_missing": len(watch.alerts - stored), "events_db": config.events_db,
              "recovery_s": round(recovery - killed_at, 2),
              "elapsed_s": round(time.monotonic() - t0, 1), "model": Path(model).name,
              "fps": fps, "leftover_processes": leftovers(work)}
    return report


def _scored_since(watch: Watch, cam: str, t: float) -> bool:
    return any(ts > t for ts in watch.scores.get(cam, [])[-50:])


def _first_since(watch: Watch, cam: str, t: float) -> float:
    return min(ts for ts in watch.scores[cam] if ts > t)


def _wait(ready, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"drill: no {what} within {timeout_s:.0f} s")
        time.sleep(0.25)


def _stream_report(times: list[float], killed_at: float, node_before, node_after) -> dict:
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    return {"scored_before": sum(1 for t in times if t <= killed_at),
            "scored_after": sum(1 for t in times if t > killed_at),
            "max_gap_s": round(max(gaps, default=0.0), 2),
            "node_before": node_before, "node_after": node_after}


def leftovers(work: Path) -> list[str]:
    """Processes still running that this drill started (its raylets, its detectors)."""
    found = subprocess.run(["pgrep", "-af", f"{work}|raylet|gcs_server"], capture_output=True,
                           text=True).stdout.splitlines()
    return [line for line in found if str(work) in line or "ray" in line]
