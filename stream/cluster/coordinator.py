"""The coordinator: the camera -> shard map, one shard per alive node, kept in step."""

from __future__ import annotations

import logging
import threading
import time

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from stream.cluster.shard import Shard

log = logging.getLogger(__name__)

#: The Ray actor name of the coordinator.
COORDINATOR_NAME = "vadstream-coordinator"


#: Frames/s assumed for a camera whose ``fps`` is not set (its source's own rate) or 0.
UNKNOWN_FPS = 10.0


def balance(cameras: list[str], shards: list[str], current: dict[str, str],
            demand: dict[str, float] | None = None,
            capacity: dict[str, float | None] | None = None) -> dict[str, str]:
    """Each camera's shard, by the shards' measured capacity when every shard has one
    (:func:`balance_by_capacity`), else by counts: cameras stay where they are unless
    their shard is gone or holds more than its share; the rest go to the least-loaded
    shards.

    Args:
        cameras: Every camera id.
        shards: The live shards.
        current: The map so far (camera -> shard).
        demand: Frames/s each camera sends (missing, None or 0: :data:`UNKNOWN_FPS`).
        capacity: Frames/s each shard measured it can score (None: not measured yet).

    Returns:
        The new map (camera -> shard); empty when there is no shard.
    """
    if not shards:
        return {}
    if capacity and all(capacity.get(s) for s in shards):
        need = {c: (demand or {}).get(c) or UNKNOWN_FPS for c in cameras}
        return balance_by_capacity(need, {s: float(capacity[s]) for s in shards}, current)
    share = -(-len(cameras) // len(shards))           # ceil: the most one shard holds
    load = {s: 0 for s in shards}
    out: dict[str, str] = {}
    for cam in sorted(cameras):
        shard = current.get(cam)
        if shard in load and load[shard] < share:
            out[cam] = shard
            load[shard] += 1
    floor = len(cameras) // len(shards)
    for cam in sorted(cameras):
        if cam not in out:
            shard = min(shards, key=lambda s: (load[s], s))
            out[cam] = shard
            load[shard] += 1
    # A shard back from the dead holds less than its floor: move cameras over to it.
    for shard in sorted(shards):
        while load[shard] < floor:
            donor = max(shards, key=lambda s: (load[s], s))
            if load[donor] <= floor:
                break
            cam = max(c for c, s in out.items() if s == donor)
            out[cam] = shard
            load[donor] -= 1
            load[shard] += 1
    return out


def balance_by_capacity(need: dict[str, float], capacity: dict[str, float],
                        current: dict[str, str]) -> dict[str, str]:
    """Cameras over shards in proportion to their capacity (frames/s they can score).

    A shard's share is the cameras' total demand split by capacity. A camera stays on its
    shard while that holds no more than its share plus one camera (so noise in the
    measurements moves nothing); the rest go where they leave the least utilisation
    (demand / capacity); then a shard under its share takes cameras from one over its own.

    Args:
        need: Each camera's demanded frames/s.
        capacity: Each live shard's measured frames/s (> 0).
        current: The map so far (camera -> shard).

    Returns:
        The new map (camera -> shard).
    """
    shards = sorted(capacity)
    total, cap_total = sum(need.values()), sum(capacity.values())
    share = {s: total * capacity[s] / cap_total for s in shards}
    most = max(need.values(), default=0.0)
    load = {s: 0.0 for s in shards}
    out: dict[str, str] = {}
    biggest_first = sorted(need, key=lambda c: (-need[c], c))
    for cam in biggest_first:
        shard = current.get(cam)
        if shard in load and load[shard] + need[cam] <= share[shard] + most:
            out[cam] = shard
            load[shard] += need[cam]
    for cam in biggest_first:
        if cam not in out:
            shard = min(shards, key=lambda s: ((load[s] + need[cam]) / capacity[s], s))
            out[cam] = shard
            load[shard] += need[cam]
    for _ in range(len(need)):   # give back: each move lowers the most loaded shard
        donor = max(shards, key=lambda s: (load[s] - share[s], s))
        taker = min(shards, key=lambda s: (load[s] - share[s], s))
        cams = [c for c, s in out.items() if s == donor]
        if not cams or load[donor] <= share[donor]:
            break
        cam = min(cams, key=lambda c: (need[c], c))
        if load[taker] + need[cam] > share[taker]:
            break
        out[cam] = taker
        load[donor] -= need[cam]
        load[taker] += need[cam]
    return out


class Coordinator:
    """Starts a shard on every alive node and keeps the camera -> shard map.

    Each ``reconcile_s`` it lists Ray's nodes: a new node gets a shard, a dead node's
    shard is dropped and its cameras go to the survivors (:func:`balance`, by the
    capacity each shard reported in its last answer), and every shard is told its
    cameras again, so a shard that Ray restarted gets them back.

    Args:
        streams: The ``streams:`` entries (dicts).
        sections: The pipeline's sections, for the shards' detectors.
        workdir: The shards' work folder (on their nodes).
        device: The shards' detector device.
        shard_cpus: CPUs per shard; shard_gpus: GPUs per shard.
        reconcile_s: Seconds between checks.
        namespace: Ray namespace of the shards' names.
    """

    def __init__(self, streams: list[dict], sections: dict, workdir: str, device: str,
                 shard_cpus: float, shard_gpus: float, reconcile_s: float,
                 namespace: str) -> None:
        self.streams = {s["id"]: s for s in streams}
        self.sections, self.workdir, self.device = sections, workdir, device
        self.shard_cpus, self.shard_gpus = shard_cpus, shard_gpus
        self.reconcile_s, self.namespace = reconcile_s, namespace
        from stream.cluster.sink import SINK_NAME

        self.sink = ray.get_actor(SINK_NAME, namespace=namespace)
        self.shards: dict[str, tuple[str, object]] = {}   # name -> (node id, handle)
        self.map: dict[str, str] = {}
        self.infos: dict[str, dict] = {}   # each shard's last answer (Shard.info)
        self.moves: list[dict] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                self.reconcile()
            except Exception:   # noqa: BLE001 - keep coordinating
                log.exception("reconcile failed")
            self.stopping.wait(self.reconcile_s)

    def reconcile(self) -> None:
        """One pass: shards for new nodes, none for dead ones, every camera assigned."""
        alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
        with self.lock:
            for name, (node, _) in list(self.shards.items()):
                if node not in alive:
                    log.warning("node %s is gone: dropping shard %s", node[:8], name)
                    del self.shards[name]
                    self.infos.pop(name, None)
            known = {node for node, _ in self.shards.values()}
            for node in sorted(alive - known):
                name = f"shard-{node[:8]}"
                self.shards[name] = (node, self._start_shard(name, node))
            old = self.map
            self.map = balance(list(self.streams), sorted(self.shards), old,
                               {c: s.get("fps") for c, s in self.streams.items()},
                               {n: self.infos.get(n, {}).get("capacity_fps")
                                for n in self.shards})
            now = time.time()
            self.moves += [{"camera": c, "from": old.get(c), "to": s, "ts": now}
                           for c, s in self.map.items() if old.get(c) != s]
            calls = [(name, handle.assign.remote(
                [self.streams[c] for c, s in sorted(self.map.items()) if s == name]))
                for name, (_, handle) in self.shards.items()]
        for name, ref in calls:
            try:
                info = ray.get(ref, timeout=max(5.0, 2 * self.reconcile_s))
            except (ray.exceptions.RayError, TimeoutError) as err:
                log.info("shard %s not answering yet (%s)", name, type(err).__name__)
                continue
            with self.lock:
                if name in self.shards:
                    self.infos[name] = info

    def _start_shard(self, name: str, node: str):
        log.info("starting shard %s on node %s", name, node[:8])
        actor = ray.remote(Shard).options(
            name=name, namespace=self.namespace, max_restarts=-1, max_task_retries=0,
            num_cpus=self.shard_cpus, num_gpus=self.shard_gpus, get_if_exists=True,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
        return actor.remote(name, self.sections, self.workdir, self.device, self.sink)

    def status(self) -> dict:
        """Shards (node, cameras, their detector's endpoints: overlays and scores stay on
        the shard's node; each camera's model; measured capacity), the camera map, recent
        moves and the sink's counters."""
        with self.lock:
            shards = {name: {"node": node, "cameras": sorted(c for c, s in self.map.items()
                                                             if s == name),
                             **{k: self.infos.get(name, {}).get(k) for k in
                                ("endpoints", "models", "capacity_fps")}}
                      for name, (node, _) in self.shards.items()}
            out = {"map": dict(self.map), "shards": shards, "moves": list(self.moves[-50:])}
        nodes = ray.nodes()
        out["nodes"] = [{"node": n["NodeID"], "address": n["NodeManagerAddress"],
                         "alive": n["Alive"]} for n in nodes]
        out["sink"] = ray.get(self.sink.stats.remote(), timeout=10)
        return out

    def node_of(self) -> dict[str, str]:
        """Each camera's node now."""
        with self.lock:
            return {c: self.shards[s][0] for c, s in self.map.items() if s in self.shards}

    def stop(self) -> None:
        """Stop coordinating, then every shard (captures, then detectors)."""
        self.stopping.set()
        self.thread.join(10)
        with self.lock:
            handles = list(self.shards.values())
        refs = [h.shutdown.remote() for _, h in handles]
        for ref in refs:
            try:
                ray.get(ref, timeout=30)
            except (ray.exceptions.RayError, TimeoutError):
                pass
        # Ended here, not by their owner's death (which Ray reports as a worker crash).
        for _, handle in handles:
            ray.kill(handle, no_restart=True)
