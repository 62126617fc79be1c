"""``vadstream detect``: score frames and publish alerts, scores and overlays."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from stream.apps.commands.common import DEVICES, add_options, log, options, stop_on_signals
from stream.apps.flags import add_dataclass_flags, overrides_from_args
from stream.defaults import BACKENDS, PRECISIONS


@dataclass(frozen=True)
class DetectOptions:
    """``vadstream detect``: its files (the detector itself: ``DetectorConfig``).

    Args:
        config: pipeline YAML (its detector/scorer/events); its values replace the
            defaults below, and flags replace both
        ready_file: once both sockets are bound, write {"bind", "publish", "pid"} here as
            JSON, with the ports chosen for endpoints ending in :* (removed at a clean
            exit)
    """

    config: Path | None = None
    ready_file: Path | None = None


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``detect`` (its detector and events flags on first use: they load MXNet)."""
    d = sub.add_parser("detect", help="score frames and publish alerts, scores and overlays",
                       populate=_detector_flags)
    add_options(d, DetectOptions)
    d.set_defaults(func=cmd_detect)


def _detector_flags(parser: argparse.ArgumentParser) -> None:
    """``detect``'s flags: one per ``DetectorConfig`` field (``detector:`` in the config)."""
    from stream.detector.config import DetectorConfig
    from stream.detector.events import EventConfig

    group = parser.add_argument_group("detector", "every key of the config's detector: "
                                      "section, as a flag that replaces the file's value")
    add_dataclass_flags(group, DetectorConfig,
                        choices={"device": DEVICES, "precision": PRECISIONS,
                                 "backend": BACKENDS})
    events = parser.add_argument_group("events", "every key of the config's events: section, "
                                       "as a flag that replaces the file's value")
    add_dataclass_flags(events, EventConfig)


def cmd_detect(args: argparse.Namespace) -> int:
    """Run the detector until stopped."""
    from stream.detector.config import DetectorConfig
    from stream.detector.events import EventConfig
    from stream.detector.loop import Detector
    from stream.pipeline import load_pipeline

    opts = options(args, DetectOptions)
    pipe = load_pipeline(opts.config, events=overrides_from_args(args, EventConfig),
                         **overrides_from_args(args, DetectorConfig))
    stop = stop_on_signals()
    detector = Detector(pipe.detector, pipe.scorer, pipe.events, pipe.annotator.build(),
                        streams=pipe.streams, clips=pipe.clips, retention=pipe.retention)
    if opts.ready_file is not None:
        write_ready_file(opts.ready_file, {**detector.endpoints, "pid": os.getpid()})
        log.info("ready: frames on %s, topics on %s (%s)", detector.endpoints["bind"],
                 detector.endpoints["publish"], opts.ready_file)
    try:
        detector.run(stop)
    finally:
        if opts.ready_file is not None:
            opts.ready_file.unlink(missing_ok=True)
    return 0


def write_ready_file(path: Path, content: dict) -> None:
    """Write ``content`` as JSON to ``path`` atomically: a reader never sees half of it."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(content) + "\n")
    os.replace(partial, path)
