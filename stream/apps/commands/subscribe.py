"""``vadstream subscribe`` (print the detector's messages) and ``vadstream record`` (a
stream's overlays to an MP4)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from stream.apps.commands.common import (
    CurveClient,
    add_options,
    log,
    options,
    stop_on_signals,
)
from stream.apps.flags import flag
from stream.defaults import STATUS_EVERY_S, TOPICS_ENDPOINT


@dataclass(frozen=True)
class SubscribeOptions:
    """``vadstream subscribe``: what it reads (how it prints: the console's flags).

    Args:
        connect: the detector's topics endpoint
        topic: topic prefix (repeatable; default all as JSON Lines, alert, eos and status
            as readable lines)
        save_overlays: folder for overlay JPEGs
        count: exit after this many messages (0: never)
        status_every: readable lines: print the detector's status at most every S seconds
            (0: never)
    """

    connect: str = TOPICS_ENDPOINT
    topic: list[str] | None = flag(None, action="append")
    save_overlays: Path | None = None
    count: int = 0
    status_every: float = flag(STATUS_EVERY_S, metavar="S")


@dataclass(frozen=True, kw_only=True)
class RecordOptions:
    """``vadstream record``: a stream's overlays to an MP4.

    Args:
        connect: the detector's topics endpoint
        stream: the stream to record
        out: the MP4 to write
        fps: the video's frame rate
    """

    connect: str = TOPICS_ENDPOINT
    stream: str
    out: Path
    fps: float = 10.0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``subscribe`` and ``record``."""
    s = sub.add_parser("subscribe", help="print published messages: a readable line each on "
                       "a terminal, JSON Lines when piped", populate=_console_flags)
    add_options(s, SubscribeOptions)
    add_options(s, CurveClient)
    s.set_defaults(func=cmd_subscribe)

    r = sub.add_parser("record", help="write a stream's overlays to an MP4")
    add_options(r, RecordOptions)
    add_options(r, CurveClient)
    r.set_defaults(func=cmd_record)


def _console_flags(parser: argparse.ArgumentParser) -> None:
    """``--json-lines`` and ``--pretty`` (added on first use: the console module reads the
    wire protocol, which loads OpenCV)."""
    from stream.apps.console import add_output_flags

    add_output_flags(parser)


def cmd_subscribe(args: argparse.Namespace) -> int:
    """Print messages until stopped (or ``--count``)."""
    from stream.apps.console import HUMAN_TOPICS, print_human, wants_human
    from stream.wire.security import client_from_args
    from stream.wire.subscriber import Subscriber, print_messages

    opts, curve = options(args, SubscribeOptions), options(args, CurveClient)
    stop = stop_on_signals()
    # Piped (or --json-lines): every topic as JSON Lines, as scripts have always read it.
    human = wants_human(args, sys.stdout)
    topics = opts.topic or (list(HUMAN_TOPICS) if human else [""])
    if human and not opts.topic and opts.save_overlays is not None:
        topics.append("overlay.")
    with Subscriber(opts.connect, topics,
                    curve=client_from_args(curve.curve_key, curve.curve_server)) as sub:
        if human:
            print_human(sub, sys.stdout, stop, save_overlays=opts.save_overlays,
                        count=opts.count, status_every_s=opts.status_every)
        else:
            print_messages(sub, sys.stdout, stop, save_overlays=opts.save_overlays,
                           count=opts.count)
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    """Write the stream's overlays until its end of stream (or stopped)."""
    from stream.wire.security import client_from_args
    from stream.wire.subscriber import Subscriber, record

    opts, curve = options(args, RecordOptions), options(args, CurveClient)
    stop = stop_on_signals()
    with Subscriber(opts.connect, [f"overlay.{opts.stream}", f"eos.{opts.stream}"],
                    curve=client_from_args(curve.curve_key, curve.curve_server)) as sub:
        frames = record(sub, opts.stream, opts.out, opts.fps, stop)
    log.info("wrote %d frames to %s", frames, opts.out)
    return 0
