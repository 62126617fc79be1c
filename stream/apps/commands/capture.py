"""``vadstream capture`` (a source's frames to a detector) and ``vadstream collect`` (a
camera's normal footage as clip folders for training)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from stream.apps.commands.common import (
    CurveClient,
    add_options,
    log,
    options,
    stop_on_signals,
)
from stream.apps.flags import add_dataclass_flags, flag
from stream.defaults import FRAMES_ENDPOINT


@dataclass(frozen=True)
class CaptureOptions:
    """``vadstream capture``: read a source and push its frames to a detector.

    Args:
        source: camera index, URL, video file or folder
        stream_id: the stream's id on the wire (letters, digits, '_' or '-')
        connect: the detector's frames endpoint
        fps: replay rate (folders 10, files their own; 0: max)
        loop: replay a finite source forever
        encoding: frames on the wire as raw pixels or JPEG
        hwm: frames queued before dropping
        watchdog: seconds without frames before a stream URL is reconnected
        max_backoff: longest wait between reconnection attempts
        fit: send frames greyed and resized to these weights' input size (the detector
            would do it: the same pixels reach the network, a fraction of the bytes and of
            its CPU time)
    """

    source: str
    stream_id: str
    connect: str = FRAMES_ENDPOINT
    fps: float | None = None
    loop: bool = False
    encoding: Literal["raw", "jpeg"] = "raw"
    hwm: int = 8
    watchdog: float = 10.0
    max_backoff: float = 30.0
    fit: str | None = flag(None, metavar="WEIGHTS")


@dataclass(frozen=True)
class CollectOptions:
    """``vadstream collect``: where it reads and writes (what it keeps: ``CollectConfig``).

    Args:
        source: camera index, URL, video file or folder
        out: dataset folder to write (clips go to OUT/Train/TrainNNN, after any already
            there)
        watchdog: seconds a stream URL may give no frames before it is given up
    """

    source: str
    out: Path
    watchdog: float = 10.0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``capture`` and ``collect``."""
    c = sub.add_parser("capture", help="read a source and push its frames to a detector")
    add_options(c, CaptureOptions)
    add_options(c, CurveClient)
    c.set_defaults(func=cmd_capture)

    o = sub.add_parser("collect", help="record a camera's normal footage as clip folders "
                       "for `vadstream train`, skipping what does not move",
                       populate=_collect_flags)
    add_options(o, CollectOptions)
    o.set_defaults(func=cmd_collect)


def _fit_contract(weights: str | None):
    """The input contract of ``weights`` for ``--fit`` (None without it); model code is
    imported only then, so a plain capture loads none."""
    if not weights:
        return None
    from models.contract import read_contract

    return read_contract(weights)


def cmd_capture(args: argparse.Namespace) -> int:
    """Push the source's frames until it ends (a live one: until stopped)."""
    from stream.capture.pusher import FramePusher, open_with_retry, run_capture
    from stream.wire.security import client_from_args

    opts, curve = options(args, CaptureOptions), options(args, CurveClient)
    stop = stop_on_signals()
    source = open_with_retry(opts.source, stop, fps=opts.fps, timeout_s=opts.watchdog,
                             max_backoff_s=opts.max_backoff)
    if source is None:
        return 0
    with source, \
            FramePusher(opts.connect, hwm=opts.hwm,
                        curve=client_from_args(curve.curve_key, curve.curve_server)) as pusher:
        log.info("capturing %s as stream %s to %s", source.name, opts.stream_id, opts.connect)
        stats = run_capture(source, opts.stream_id, pusher, encoding=opts.encoding,
                            fps=opts.fps, loop=opts.loop, stop=stop,
                            max_backoff_s=opts.max_backoff,
                            fit=_fit_contract(opts.fit))
    log.info("capture %s done: %d read, %d sent, %d dropped", opts.stream_id, stats.read,
             stats.sent, stats.dropped)
    return 0


def _collect_flags(parser: argparse.ArgumentParser) -> None:
    """``collect``'s flags: one per ``CollectConfig`` field (its module reads frames, which
    loads MXNet's input contract: added on first use)."""
    from stream.capture.collect import CollectConfig

    add_dataclass_flags(parser, CollectConfig, rename={"hold_s": "hold"})


def cmd_collect(args: argparse.Namespace) -> int:
    """Watch the source, keep what moves as clip folders, say what to run next."""
    from tqdm import tqdm

    from stream.apps.flags import overrides_from_args
    from stream.capture.collect import SPLIT, CollectConfig, collect
    from stream.capture.sources import open_source

    opts = options(args, CollectOptions)
    config = CollectConfig(**overrides_from_args(args, CollectConfig))
    stop = stop_on_signals()
    # fps=None: a file is read at its own rate (``--fps`` subsamples, it does not pace)
    with open_source(opts.source, fps=None, timeout_s=opts.watchdog) as source, \
            tqdm(total=round(config.minutes * 60), unit="s", desc="collect", disable=None,
                 bar_format="{desc} {n_fmt}/{total_fmt} s |{bar}| [{elapsed}]{postfix}",
                 file=sys.stderr) as bar:
        def progress(r) -> None:
            bar.update(int(r.seconds) - bar.n)
            bar.set_postfix_str(f"kept {r.kept}, still {r.still}", refresh=False)

        result = collect(source, opts.out, config, progress=progress,
                         should_stop=stop.is_set)
    split = opts.out / SPLIT
    print(f"collect: watched {result.seconds:.0f} s of {opts.source}: kept {result.kept} of "
          f"{result.sampled} frames ({result.bytes / 1e6:.0f} MB) in {len(result.clips)} "
          f"clip(s) under {split} "
          f"({result.still} still, {result.short} in clips under {config.min_clip_frames} "
          "frames)")
    if not result.clips:
        print(f"collect: nothing was kept: nothing moved enough (--motion {config.motion:g} "
              "of the pixels), or the source ended; watch longer or lower --motion")
        return 1
    print(f"collect: next: vadstream train --config configs/collect_example.yaml --data "
          f"{opts.out} --out models/weights/<camera> (it holds the last clips out to "
          "calibrate on: collect a few clips at least)")
    return 0
