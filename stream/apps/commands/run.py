"""``vadstream run``: the detector and every configured capture, supervised (or, with a
cluster config, detector shards on a Ray cluster)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from stream.apps.commands.common import add_options, options, stop_on_signals


@dataclass(frozen=True)
class RunOptions:
    """``vadstream run``.

    Args:
        config: pipeline YAML (or a cluster config: shards on a Ray cluster)
    """

    config: Path = Path("configs/pipeline.yaml")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``run``."""
    u = sub.add_parser("run", help="run the detector and every configured capture, supervised")
    add_options(u, RunOptions)
    u.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    """Supervise the configured pipeline until stopped."""
    from stream.apps.supervisor import supervise
    from stream.cluster.config import is_cluster_config
    from stream.pipeline import load_pipeline

    config = options(args, RunOptions).config
    if is_cluster_config(config):   # configs/cluster.yaml: shards on a Ray cluster
        from stream.apps.cluster import run_cluster

        return run_cluster(config, stop_on_signals())
    pipe = load_pipeline(config)
    if not pipe.streams and not pipe.supervisor.control:
        raise ValueError(f"{config} configures no streams; add entries under `streams:` "
                         "(or set supervisor.control to add cameras while it runs)")
    supervise(config, pipe, stop_on_signals())
    return 0
