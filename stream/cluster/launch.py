"""Start or join Ray, and start the cluster's event sink and coordinator on the head."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from stream.cluster.config import ClusterConfig
from stream.cluster.coordinator import COORDINATOR_NAME, Coordinator
from stream.cluster.sink import SINK_NAME, EventSink
from stream.pipeline import StreamConfig

log = logging.getLogger(__name__)


def connect(config: ClusterConfig) -> None:
    """``ray.init`` for ``config.address`` (``local``: an embedded Ray on loopback)."""
    if ray.is_initialized():
        return
    if config.address == "local":
        ray.init(namespace=config.namespace, include_dashboard=False,
                 _node_ip_address="127.0.0.1", configure_logging=False)
    else:
        ray.init(address=config.address, namespace=config.namespace, configure_logging=False)


def start(config: ClusterConfig, streams: tuple[StreamConfig, ...], sections: dict,
          node_id: str | None = None):
    """Start the event sink and the coordinator on ``node_id`` (None: this driver's node).

    Returns:
        ``(coordinator, sink)`` actor handles.
    """
    node_id = node_id or ray.get_runtime_context().get_node_id()
    here = NodeAffinitySchedulingStrategy(node_id, soft=False)
    common = dict(namespace=config.namespace, num_cpus=0, scheduling_strategy=here,
                  lifetime="detached" if config.detached else None, max_restarts=-1)
    sink = ray.remote(EventSink).options(name=SINK_NAME, **common).remote(
        config.events_db, config.publish, config.curve_secret_key, config.curve_allowed)
    ray.get(sink.stats.remote(), timeout=60)    # bound, store open: or fail here
    coordinator = ray.remote(Coordinator).options(
        name=COORDINATOR_NAME, max_concurrency=4, **common).remote(
        [asdict(s) for s in streams], sections, config.workdir, config.device,
        config.shard_cpus, config.shard_gpus, config.reconcile_s, config.namespace)
    log.info("cluster: %d camera(s); alerts, scores and status on %s; events in %s",
             len(streams), config.publish, config.events_db)
    return coordinator, sink


def stop(coordinator, sink) -> None:
    """Stop the shards (captures, then detectors), then the sink."""
    try:
        ray.get(coordinator.stop.remote(), timeout=60)
    except (ray.exceptions.RayError, TimeoutError):
        log.warning("the coordinator did not stop cleanly")
    try:
        ray.get(sink.close.remote(), timeout=10)
    except (ray.exceptions.RayError, TimeoutError):
        pass
    ray.kill(coordinator)
    ray.kill(sink)


def address_file(config: ClusterConfig) -> Path:
    """Where ``vadstream run`` writes an embedded Ray's GCS address (``address: local``)."""
    return Path(config.workdir) / "ray-address"


def status(address: str, namespace: str) -> dict:
    """The running cluster's coordinator status (``vadstream cluster status``)."""
    loopback = address.startswith("127.0.0.1:")   # then this driver stays on it too
    ray.init(address=address, namespace=namespace, configure_logging=False,
             log_to_driver=False, **({"_node_ip_address": "127.0.0.1"} if loopback else {}))
    try:
        coordinator = ray.get_actor(COORDINATOR_NAME)   # held: a temporary handle is lost
        return ray.get(coordinator.status.remote(), timeout=30)
    finally:
        ray.shutdown()
