"""``vadstream run`` with a ``cluster:`` config, ``vadstream cluster status`` and ``drill``."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)


def run_cluster(config_path: Path, stop: threading.Event) -> int:
    """Start (or join) Ray, the sink and the coordinator; run until ``stop``."""
    import os

    from stream.cluster import require_ray
    from stream.cluster.config import load_cluster

    setup = load_cluster(config_path)
    if not setup.streams:
        raise ValueError(f"{config_path} configures no streams; add entries under `streams:`")
    if setup.cluster.address == "local":
        # An embedded Ray stays on loopback (read when Ray is imported, hence here).
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    require_ray()
    import ray

    from stream.cluster import launch
    launch.connect(setup.cluster)
    _catch_signals_again(stop)
    address_file = launch.address_file(setup.cluster)
    if setup.cluster.address == "local":   # for `cluster status --config` (Ray's `auto`
        address_file.parent.mkdir(parents=True, exist_ok=True)   # finds no embedded Ray)
        address_file.write_text(ray.get_runtime_context().gcs_address)
    coordinator, sink = launch.start(setup.cluster, setup.streams, setup.sections)
    try:
        while not stop.wait(10.0):
            status = ray.get(coordinator.status.remote(), timeout=30)
            log.info("%s", summary(status))
    finally:
        if not setup.cluster.detached:
            launch.stop(coordinator, sink)
        ray.shutdown()
        if setup.cluster.address == "local":
            address_file.unlink(missing_ok=True)
    return 0


def _catch_signals_again(stop: threading.Event) -> None:
    """Make SIGINT and SIGTERM set ``stop`` again: ``ray.init`` puts Ray's own handlers in
    their place (SIGTERM: a crash report, then death, leaving Ray's processes behind)."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum, _frame):
        log.info("received %s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def summary(status: dict) -> str:
    """One line: shards, cameras each, frames/s and alerts."""
    streams = status["sink"]["streams"]
    parts = []
    for name, shard in sorted(status["shards"].items()):
        fps = sum(streams.get(c, {}).get("fps", 0.0) for c in shard["cameras"])
        parts.append(f"{name}@{shard['node'][:8]}: {len(shard['cameras'])} cameras "
                     f"{fps:.1f} frames/s")
    return f"{'; '.join(parts)}; {status['sink']['alerts_stored']} alerts stored"


def cmd_cluster_status(args: argparse.Namespace) -> int:
    from stream.cluster import require_ray

    require_ray()
    from stream.cluster.launch import status as cluster_status

    address, namespace = args.address, args.namespace
    if args.config is not None:
        from stream.cluster.config import load_cluster
        from stream.cluster.launch import address_file

        cluster = load_cluster(args.config).cluster
        address, namespace = cluster.address, cluster.namespace
        if address == "local":
            path = address_file(cluster)
            if not path.is_file():
                raise FileNotFoundError(f"{path} not found: is `vadstream run --config "
                                        f"{args.config}` running?")
            address = path.read_text().strip()
    status = cluster_status(address, namespace)
    print(json.dumps(status, indent=2) if args.json else "\n".join(status_table(status)))
    return 0


def status_table(status: dict) -> list[str]:
    """``cluster status``'s lines: the nodes and the sink, then per shard its node, measured
    capacity and detector endpoint (overlays stay there), then its cameras."""
    alive = {n["node"]: n for n in status["nodes"]}
    streams = status["sink"]["streams"]
    lines = [f"nodes: {sum(n['alive'] for n in status['nodes'])} alive of {len(alive)}; "
             f"alerts stored: {status['sink']['alerts_stored']} ({status['sink']['events_db']}); "
             f"topics on {status['sink']['endpoint']}"]
    for name, shard in sorted(status["shards"].items()):
        node = alive.get(shard["node"], {})
        capacity = shard.get("capacity_fps")
        lines.append(
            f"{name} node {shard['node'][:12]} ({node.get('address', '?')}, "
            f"{'alive' if node.get('alive') else 'dead'}): {len(shard['cameras'])} cameras, "
            f"capacity {'not measured yet' if capacity is None else f'{capacity} frames/s'}; "
            f"overlays and scores on {(shard.get('endpoints') or {}).get('publish', '?')}")
        models = shard.get("models") or {}
        for cam in shard["cameras"]:
            s = streams.get(cam, {})
            lines.append(f"  {cam:16} {s.get('fps', 0.0):6.1f} frames/s  "
                         f"{s.get('scored', 0):8d} scored  {s.get('alerts', 0):5d} alerts  "
                         f"{Path(models.get(cam, '?')).name}")
    return lines


def cmd_cluster_drill(args: argparse.Namespace) -> int:
    from stream.cluster import require_ray

    require_ray()
    from stream.cluster.drill import drill

    t0 = time.monotonic()
    report = drill(nodes=args.nodes, streams=args.streams, kill_after=args.kill_after,
                   after_s=args.after, model=args.model, fps=args.fps)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    log.info("drill done in %.0f s", time.monotonic() - t0)
    ok = (report["alerts_missing"] == 0 and not report["leftover_processes"]
          and all(s["scored_after"] > 0 for s in report["streams"].values()))
    return 0 if ok else 1
