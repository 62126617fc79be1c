"""``configs/cluster.yaml``: a ``cluster:`` section beside a pipeline's sections."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from stream.config import build, load_yaml
from stream.pipeline import Pipeline, StreamConfig, load_pipeline


@dataclass(frozen=True)
class ClusterConfig:
    """``cluster:``: where Ray is and what the cluster's shared parts bind.

    Args:
        address: Ray address: ``local`` starts an embedded Ray on this machine, ``auto``
            joins the one ``ray start`` began here, ``HOST:PORT`` a head node's GCS.
        namespace: Ray namespace of the named actors (two clusters, two namespaces).
        publish: The event sink's PUB endpoint: every alert, score and status of the
            cluster (what ``vadstream subscribe`` and ``serve`` connect to).
        events_db: The cluster's events store, written by the event sink alone.
        workdir: Each shard's logs, config and local events store (on its node).
        shard_cpus: CPUs a detector shard reserves (one shard per node).
        shard_gpus: GPUs a detector shard reserves (fractions too); > 0 runs it on GPU.
        device: The shards' detector device (``auto``, ``cpu``, ``gpu``).
        reconcile_s: Seconds between the coordinator's checks of nodes and shards.
        detached: Start the coordinator and the sink as detached actors: they outlive
            the ``vadstream run`` that started them (stop them with ``ray stop``).
        curve_secret_key: The event sink's CURVE ``.key_secret``: set, only clients whose
            public key is in ``curve_allowed`` may read ``publish`` (``vadstream serve``
            and ``subscribe`` then pass ``--curve-key`` and ``--curve-server``). Ray
            itself has no authentication: keep its ports on a trusted network.
        curve_allowed: Folder of the admitted clients' ``.key`` files.
    """

    address: str = "local"
    namespace: str = "vadstream"
    publish: str = "tcp://127.0.0.1:5556"
    events_db: str = "events.sqlite3"
    workdir: str = "out/cluster"
    shard_cpus: float = 1.0
    shard_gpus: float = 0.0
    device: str = "auto"
    reconcile_s: float = 1.0
    detached: bool = False
    curve_secret_key: str = ""
    curve_allowed: str = ""

    def __post_init__(self) -> None:
        if bool(self.curve_secret_key) != bool(self.curve_allowed):
            raise ValueError("cluster: CURVE needs both curve_secret_key and curve_allowed")


@dataclass(frozen=True)
class ClusterSetup:
    """A whole cluster config: the ``cluster:`` section, the pipeline, its raw sections."""

    cluster: ClusterConfig
    pipeline: Pipeline
    sections: dict   # the pipeline's sections as written (no streams), for each shard

    @property
    def streams(self) -> tuple[StreamConfig, ...]:
        return self.pipeline.streams


def is_cluster_config(path: str | Path) -> bool:
    """Whether a config file has a ``cluster:`` section (``vadstream run`` branches on it)."""
    return "cluster" in load_yaml(path)


def load_cluster(path: str | Path) -> ClusterSetup:
    """Read ``configs/cluster.yaml``: its ``cluster:`` section and a pipeline's sections.

    Raises:
        ConfigError: On an unknown section or key, a wrong type or a bad value.
    """
    data = load_yaml(path)
    cluster = build(ClusterConfig, data.pop("cluster", None), f"{path}: cluster")
    pipeline = load_pipeline_dict(data, str(path))
    sections = {k: copy.deepcopy(v) for k, v in data.items() if k != "streams"}
    return ClusterSetup(cluster, pipeline, sections)


def load_pipeline_dict(data: dict, name: str) -> Pipeline:
    """:func:`stream.pipeline.load_pipeline` on sections already read."""
    import tempfile

    import yaml

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="cluster-") as f:
        yaml.safe_dump(data, f)
        f.flush()
        try:
            return load_pipeline(f.name)
        except ValueError as err:   # ConfigError is a ValueError: name the real file
            raise type(err)(str(err).replace(f.name, name)) from None
