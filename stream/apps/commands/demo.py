"""``vadstream demo``: the whole pipeline on UCSD Ped2 (or any source), or on cast parts
passing a camera (``--conveyor``)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from stream.apps.commands.common import DEVICES, add_options, options, stop_on_signals
from stream.apps.flags import flag
from stream.defaults import DASHBOARD_HTTP, PED2, PRECISIONS, WEIGHTS


@dataclass(frozen=True)
class DemoOptions:
    """``vadstream demo`` (how it prints: the console's flags).

    Args:
        source: any capture source (default: UCSD Ped2 test clips in ../shared/data; with
            --conveyor, validation parts of the model)
        model: weights (default: models/weights/ped2_predictor; with --conveyor,
            models/weights/casting_cam)
        conveyor: conveyor inspection: a seeded mix of good and defective cast parts the
            model never trained on (its validation split), 2 parts/s, one event per
            defective part
        parts: parts on the belt with --conveyor
        stream_id: stream id (default: demo; conveyor with --conveyor)
        fps: replay rate (0: as fast as the detector goes; --conveyor: 2)
        device: where the network runs
        precision: the detector's model precision (default: its own, auto)
        video: the overlay video to write
        json: write a summary with every alert here
        http: HOST:PORT of the dashboard, or a free port when the default one is taken
        no_dashboard: do not start vadstream serve
        hold: when the source ends, keep the detector and dashboard up until Ctrl-C
        mqtt: also run the MQTT bridge (vadstream mqtt) on this broker, e.g.
            mqtt://127.0.0.1:1883
    """

    source: str | None = None
    model: str | None = None
    conveyor: bool = False
    parts: int = 40
    stream_id: str | None = None
    fps: float | None = None
    device: str = flag("auto", choices=DEVICES)
    precision: str | None = flag(None, choices=PRECISIONS)
    video: Path = Path("out/demo/overlays.mp4")
    json: Path | None = None
    http: str | None = flag(None, show_default=DASHBOARD_HTTP)
    no_dashboard: bool = False
    hold: bool = False
    mqtt: str | None = flag(None, metavar="URL")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``demo`` (its output flags on first use, as ``subscribe``'s)."""
    m = sub.add_parser("demo", help="the whole pipeline on UCSD Ped2 (or --source), or on "
                       "cast parts passing a camera (--conveyor)", populate=_output_flags)
    add_options(m, DemoOptions)
    m.set_defaults(func=cmd_demo)


def _output_flags(parser: argparse.ArgumentParser) -> None:
    """``--json-lines`` and ``--pretty`` (added on first use: the console module reads the
    wire protocol, which loads OpenCV)."""
    from stream.apps.console import add_output_flags

    add_output_flags(parser)


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the demo to the source's end (130: interrupted)."""
    import tempfile

    from stream.apps.console import wants_human
    from stream.apps.demo import dashboard_address, run_demo, write_summary

    opts = options(args, DemoOptions)
    model, source, fps = opts.model, opts.source, opts.fps
    extra = ["--precision", opts.precision] if opts.precision else []
    with tempfile.TemporaryDirectory(prefix="vadstream-conveyor-") as parts:
        if opts.conveyor:
            from stream.apps import conveyor

            model = model or str(conveyor.CONVEYOR_WEIGHTS)
            conveyor.check_weights(model)
            if source is None:   # validation parts only: never one the model trained on
                source = str(conveyor.conveyor_sample(model, Path(parts), opts.parts))
            fps = conveyor.CONVEYOR_FPS if fps is None else fps
            extra += conveyor.CONVEYOR_EVENTS
        model = model or str(WEIGHTS)
        source = source or str(PED2)
        stream_id = opts.stream_id or ("conveyor" if opts.conveyor else "demo")
        stop = stop_on_signals()
        http = None if opts.no_dashboard else dashboard_address(opts.http)
        print(f"vadstream demo: {source} -> detector -> alerts (video: {opts.video})",
              flush=True)
        # The alert lines are the demo's own output: readable on a terminal, JSON Lines
        # when piped; the processes' logs only say what went wrong (all of it: --verbose).
        result = run_demo(source, model, opts.video, stream=stream_id, fps=fps,
                          device=opts.device, stop=stop, http=http, hold=opts.hold,
                          extra_detect_args=extra or None,
                          printer_args=["--pretty" if wants_human(args, sys.stdout)
                                        else "--json-lines"],
                          child_args=["--verbose" if args.verbose else "--quiet"],
                          mqtt=opts.mqtt)
    interrupted = stop.is_set() and result.eos is None
    print(f"demo: {result.frames} frames scored at {result.fps:.1f} frames/s, "
          f"{sum(a.type == 'start' for a in result.alerts)} event(s), "
          f"{len(result.alerts)} alert message(s); overlay video {opts.video}", flush=True)
    if opts.json:
        write_summary(opts.json, result, source=source, model=model,
                      video=str(opts.video), interrupted=interrupted)
    return 130 if interrupted else 0
