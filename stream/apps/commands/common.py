"""What the command modules share: the parser whose flags are added on first use, the stop
signal, the CURVE client flags, and a command's options read back from its flags."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import threading
from dataclasses import dataclass
from typing import TypeVar

from stream.apps.flags import add_dataclass_flags

log = logging.getLogger("vadstream")
#: ``--device`` of the commands that run a network.
DEVICES = ("auto", "cpu", "gpu")

T = TypeVar("T")


class Parser(argparse.ArgumentParser):
    """An argument parser whose flags can be added on first use.

    ``populate(parser)`` runs once, before the parser first parses or formats its help.
    ``detect``'s flags are generated from ``DetectorConfig``, whose module loads MXNet;
    added this way, only ``vadstream detect`` loads it, never ``serve`` or ``capture``.

    Args:
        populate: Adds the flags (None: nothing to add).
    """

    def __init__(self, *args, populate=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._populate = populate

    def _ensure_populated(self) -> None:
        if self._populate is not None:
            populate, self._populate = self._populate, None
            populate(self)

    def parse_known_args(self, args=None, namespace=None):
        self._ensure_populated()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self._ensure_populated()
        return super().format_help()


def stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM, so loops end cleanly."""
    stop = threading.Event()

    def handler(signum, _frame):
        log.info("received %s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def add_options(parser: argparse.ArgumentParser, cls: type) -> None:
    """A command's own flags, one per field of its options dataclass ``cls``, with the
    fields' defaults (``stream.apps.flags.add_dataclass_flags`` with ``defaults=True``)."""
    add_dataclass_flags(parser, cls, defaults=True)


def options(args: argparse.Namespace, cls: type[T]) -> T:
    """The options dataclass ``cls`` as the flags of :func:`add_options` set it."""
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if f.init})


@dataclass(frozen=True)
class CurveClient:
    """How a client reaches a detector that requires CURVE.

    Args:
        curve_key: your CURVE .key_secret (when the detector needs one)
        curve_server: the detector's public .key
    """

    curve_key: str | None = None
    curve_server: str | None = None
