"""The detector's topics as a person reads them: one line per message, on a terminal.

``vadstream subscribe`` and ``vadstream demo`` print these lines when their standard
output is a terminal (or with ``--pretty``), and JSON Lines (``print_messages``) when it
is piped (or with ``--json-lines``), so a script that reads them gets what it always got.

An alert reads (one line each; the second wrapped here)::

    14:02:11  ped2  START   score 612.3 ≥ 519.8  clip Test001 frame 87  event 3fa2c1d0
    14:02:14  ped2  END     peak 748.0 ≥ 519.8, 31 frames in 3.1 s  clip Test001 frame 118
        event 3fa2c1d0

Times are local, of the frame that raised the message (with the date when it is not
today's); the event id is its first 8 hex digits, as the detector's log writes it.
"""

from __future__ import annotations

import argparse
import datetime
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from stream.defaults import STATUS_EVERY_S
from stream.wire.topics import (
    AlertMessage,
    EosMessage,
    IdleStream,
    OverlayMessage,
    ScoreMessage,
    StatusMessage,
    TopicMessage,
)

if TYPE_CHECKING:
    from stream.wire.subscriber import Subscriber

#: What a person's console subscribes to when no ``--topic`` is given: alerts, the end of
#: each stream, and ``status`` (printed at most every ``--status-every`` seconds). Scores
#: and overlays come at the frame rate, and subscribing to overlays makes the detector
#: draw every frame, so they are printed only when asked for.
HUMAN_TOPICS = ("alert.", "eos.", "status")
_COLOURS = {"START": "\033[1;31m", "UPDATE": "\033[33m", "END": "\033[32m"}
_RESET = "\033[0m"


def wants_human(args: argparse.Namespace, out: TextIO) -> bool:
    """Whether to print readable lines: ``--pretty``, else ``--json-lines``, else whether
    ``out`` is a terminal."""
    if getattr(args, "pretty", False):
        return True
    if getattr(args, "json_lines", False):
        return False
    isatty = getattr(out, "isatty", None)
    return bool(isatty and isatty())


def add_output_flags(parser: argparse.ArgumentParser) -> None:
    """``--json-lines`` and ``--pretty`` (alias ``--human``), which exclude each other."""
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--json-lines", action="store_true", help="one JSON object per message "
                      "(the default when standard output is not a terminal)")
    mode.add_argument("--pretty", "--human", action="store_true", help="one readable line "
                      "per message (the default on a terminal), even when piped")


class Style:
    """How lines are decorated for where they go.

    Args:
        colour: Colour the alert kind (ANSI escapes): a terminal without ``NO_COLOR``.
        unicode: Write ``≥``, ``…`` and ``·`` (the output's encoding can); else ASCII.
    """

    def __init__(self, colour: bool = False, unicode: bool = True) -> None:
        self.colour = colour
        self.ge, self.sep = ("≥", "·") if unicode else (">=", "|")

    @classmethod
    def for_output(cls, out: TextIO) -> Style:
        """The style ``out`` can show: colour on a terminal unless ``NO_COLOR`` is set, and
        Unicode when its encoding has the signs."""
        isatty = getattr(out, "isatty", None)
        colour = bool(isatty and isatty()) and not os.environ.get("NO_COLOR")
        try:
            "≥·".encode(getattr(out, "encoding", None) or "utf-8")
            unicode = True
        except (UnicodeEncodeError, LookupError):
            unicode = False
        return cls(colour=colour, unicode=unicode)

    def kind(self, word: str) -> str:
        padded = f"{word:<6}"
        if self.colour and word in _COLOURS:
            return f"{_COLOURS[word]}{padded}{_RESET}"
        return padded


def clock(ts: float, now: float | None = None) -> str:
    """``HH:MM:SS`` of Unix time ``ts`` in local time; ``YYYY-MM-DD HH:MM:SS`` when that is
    not the day of ``now`` (default: the current time)."""
    when = datetime.datetime.fromtimestamp(ts)
    today = datetime.datetime.fromtimestamp(time.time() if now is None else now).date()
    return when.strftime("%H:%M:%S" if when.date() == today else "%Y-%m-%d %H:%M:%S")


def _where(clip: str | None, frame: int | None, seq: int) -> str:
    """Where in the footage: a replayed clip's name and frame, else the capture's seq."""
    if clip is not None and frame is not None:
        return f"clip {clip} frame {frame}"
    return f"frame seq {seq}"


def _versus(score: float, threshold: float, style: Style) -> str:
    return f"{score:.1f} {style.ge if score >= threshold else '<'} {threshold:.1f}"


def format_alert(alert: AlertMessage, style: Style | None = None,
                 now: float | None = None) -> str:
    """One line for an alert: local time, stream, START/UPDATE/END, its score against the
    threshold (at the end: the event's peak, its frames and its length), where in the
    footage, the event's id, and (at the end) the path of its MP4 clip."""
    style = style or Style()
    kind = alert.type.upper()
    if alert.type == "end":
        span = (alert.end_ts if alert.end_ts is not None else alert.ts) - alert.start_ts
        what = (f"peak {_versus(alert.peak_score, alert.threshold, style)}, "
                f"{alert.frames} frame{'s' if alert.frames != 1 else ''} in {span:.1f} s")
        if alert.recovered:
            what += " (closed at a detector restart)"
    elif alert.type == "update":
        what = (f"score {_versus(alert.score, alert.threshold, style)}, "
                f"peak {alert.peak_score:.1f}")
    else:
        what = f"score {_versus(alert.score, alert.threshold, style)}"
    video = f"  video {alert.clip_path}" if alert.clip_path else ""
    return (f"{clock(alert.ts, now)}  {alert.stream}  {style.kind(kind)}  {what}  "
            f"{_where(alert.clip, alert.frame, alert.seq)}  event {alert.id[:8]}{video}")


def format_score(msg: ScoreMessage, style: Style | None = None,
                 now: float | None = None) -> str:
    """One line per scored frame (asked for with ``--topic score``)."""
    style = style or Style()
    mark = "  anomalous" if msg.anomalous else ""
    return (f"{clock(msg.ts, now)}  {msg.stream}  {style.kind('score')}  "
            f"{msg.rule} {_versus(msg.scores.score, msg.threshold, style)}{mark}  "
            f"{_where(msg.clip, msg.frame, msg.seq)}  {msg.latency_ms:.0f} ms")


def format_overlay(msg: OverlayMessage, style: Style | None = None,
                   now: float | None = None) -> str:
    """One line per annotated frame (asked for with ``--topic overlay``)."""
    style = style or Style()
    boxes = f"  {len(msg.boxes)} box{'es' if len(msg.boxes) != 1 else ''}" if msg.boxes else ""
    return (f"{clock(msg.ts, now)}  {msg.stream}  {style.kind('frame')}  "
            f"{len(msg.jpeg) / 1024:.0f} KB JPEG{boxes}  {_where(msg.clip, msg.frame, msg.seq)}")


def format_eos(msg: EosMessage, style: Style | None = None, now: float | None = None) -> str:
    """The line for a stream's end, with its counters."""
    style = style or Style()
    return (f"{clock(time.time() if now is None else now, now)}  {msg.stream}  "
            f"{style.kind('ended')}  {msg.scored} scored of {msg.received} received, "
            f"{msg.dropped} dropped, {msg.overrun} overrun")


def format_status(msg: StatusMessage, style: Style | None = None,
                  now: float | None = None) -> str:
    """One line for the detector's state: its rule, and each stream's frames/s, queue,
    drops and events (offline streams by name)."""
    style = style or Style()
    parts = []
    for name, s in sorted(msg.streams.items()):
        if isinstance(s, IdleStream) or not s.online:
            parts.append(f"{name} offline")
        else:
            event = ", event open" if s.event_open else ""
            parts.append(f"{name} {s.fps:.1f} fps, queue {s.queue}, {s.dropped} dropped, "
                         f"{s.events} event{'s' if s.events != 1 else ''}{event}")
    streams = f" {style.sep} ".join(parts) if parts else "no streams"
    return (f"{clock(msg.ts, now)}  detector  {style.kind('status')}  up "
            f"{msg.uptime_s / 60:.0f} min, {msg.rule} threshold {msg.threshold:.1f}  {streams}")


def format_message(msg: TopicMessage, style: Style | None = None,
                   now: float | None = None) -> str:
    """The readable line of any topic message."""
    if isinstance(msg, AlertMessage):
        return format_alert(msg, style, now)
    if isinstance(msg, ScoreMessage):
        return format_score(msg, style, now)
    if isinstance(msg, OverlayMessage):
        return format_overlay(msg, style, now)
    if isinstance(msg, EosMessage):
        return format_eos(msg, style, now)
    if isinstance(msg, StatusMessage):
        return format_status(msg, style, now)
    raise TypeError(f"no readable form for {type(msg).__name__}")


def print_human(sub: Subscriber, out: TextIO, stop: threading.Event,
                save_overlays: Path | None = None, count: int = 0,
                status_every_s: float = STATUS_EVERY_S) -> int:
    """Print every message as one readable line; save overlay JPEGs.

    Args:
        sub: Subscriber.
        out: Where the lines go.
        stop: Ends the loop.
        save_overlays: Folder for overlay JPEGs (``<stream>_<seq>.jpg``).
        count: Stop after this many lines (0: never).
        status_every_s: Print a ``status`` at most this often (0: never); the first one
            is printed as it comes.

    Returns:
        Lines printed.
    """
    if save_overlays is not None:
        save_overlays.mkdir(parents=True, exist_ok=True)
    style = Style.for_output(out)
    n, last_status = 0, None
    while not stop.is_set() and (not count or n < count):
        msg = sub.recv()
        if msg is None:
            continue
        if isinstance(msg, OverlayMessage) and save_overlays is not None:
            (save_overlays / f"{msg.stream}_{msg.seq:08d}.jpg").write_bytes(msg.jpeg)
        if isinstance(msg, StatusMessage):
            now = time.monotonic()
            if status_every_s <= 0 or (last_status is not None
                                       and now - last_status < status_every_s):
                continue
            last_status = now
        out.write(format_message(msg, style) + "\n")
        out.flush()
        n += 1
    return n

