"""``vadstream cluster status|drill``: a Ray cluster of detector shards (what they do:
``stream.apps.cluster``)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from stream.apps.commands.common import add_options
from stream.apps.flags import flag
from stream.defaults import STAE_WEIGHTS


@dataclass(frozen=True)
class StatusOptions:
    """``vadstream cluster status``.

    Args:
        address: Ray address (auto: the one here)
        namespace: the Ray namespace of the shards
        config: the cluster config `vadstream run` runs: its address and namespace
            (address: local: the embedded Ray's)
        json: print the status as JSON
    """

    address: str = "auto"
    namespace: str = "vadstream"
    config: Path | None = None
    json: bool = False


@dataclass(frozen=True)
class DrillOptions:
    """``vadstream cluster drill``.

    Args:
        nodes: Ray nodes (one CPU each)
        streams: Ped2 clips replayed as cameras
        kill_after: seconds of scoring before a worker node is SIGKILLed
        after: seconds measured once the killed node's cameras score again
        fps: replay rate of each camera
        model: weights the shards score with
        json: write the report here
    """

    nodes: int = 3
    streams: int = 4
    kill_after: float = 20.0
    after: float = 15.0
    fps: float = 5.0
    model: str = flag(str(STAE_WEIGHTS), show_default=STAE_WEIGHTS.name)
    json: Path | None = None


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``cluster`` and its subcommands."""
    from stream.apps.cluster import cmd_cluster_drill, cmd_cluster_status

    c = sub.add_parser("cluster", help="a Ray cluster of detector shards: status, drill")
    csub = c.add_subparsers(dest="cluster_command", required=True)
    s = csub.add_parser("status", help="shards, their nodes, cameras, frames/s, alerts")
    add_options(s, StatusOptions)
    s.set_defaults(func=cmd_cluster_status)
    d = csub.add_parser("drill", help="failover drill on a local multi-node Ray cluster")
    add_options(d, DrillOptions)
    d.set_defaults(func=cmd_cluster_drill)
