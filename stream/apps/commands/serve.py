"""``vadstream serve``: the web dashboard (its flags: ``ServeConfig``)."""

from __future__ import annotations

import argparse

from stream.apps.commands.common import stop_on_signals
from stream.apps.flags import add_dataclass_flags, overrides_from_args
from stream.dashboard.config import ServeConfig


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``serve``."""
    w = sub.add_parser("serve", help="web dashboard: live overlays, score charts, alerts with "
                       "snapshots, JSON API and Prometheus /metrics")
    add_dataclass_flags(w, ServeConfig, rename={"history_s": "history"})
    w.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the dashboard until stopped."""
    # Imports nothing of MXNet: the dashboard runs beside the detector, not as one.
    from stream.dashboard.app import run_serve

    config = ServeConfig(**overrides_from_args(args, ServeConfig))
    stop = stop_on_signals()
    run_serve(config, stop, ready=lambda url: print(
        f"dashboard: {url} (detector topics {config.connect}, events {config.events_db})",
        flush=True))
    return 0
