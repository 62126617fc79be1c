"""``vadstream cluster status|drill``: a Ray cluster of detector shards (the parsers and
handlers live with the cluster code, ``stream.apps.cluster``)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``cluster`` and its subcommands."""
    from stream.apps.cluster import add_cluster_parser

    add_cluster_parser(sub)
