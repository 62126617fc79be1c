"""``vadstream adapt``: teach a camera's model what its operators labelled
(:mod:`train.adapt`), put it live or take it back (:mod:`train.adapt_live`), adapt
automatically (``--watch``), and the drill that measures it (``vadstream adapt drill``)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

from stream.adapt import AdaptConfig
from stream.apps.flags import add_dataclass_flags, overrides_from_args

log = logging.getLogger("vadstream")
CONFIG = Path("configs/pipeline.yaml")


@dataclass(frozen=True)
class AdaptOptions:
    """``vadstream adapt``'s own options (its settings: :class:`stream.adapt.AdaptConfig`).

    Args:
        stream: the stream to adapt
        rollback: put back the weights this stream's adapted ones replaced
        threshold_only: keep the network; recalibrate its threshold from the normal
            footage (when drift says the scene shifted)
        parts: a labelled classifier (cam): copy its labelled parts into class folders for
            its next training
        watch: adapt every stream automatically as labels accumulate (what `vadstream run`
            starts with adapt.auto)
        config: the pipeline config (its adapt:, detector.events_db, detector.control,
            mqtt:)
        events_db: the detector's events store (default: the config's)
        control: the detector's control endpoint (default: the config's)
        weights: the weights to adapt (default: those the detector scores the stream with)
        json: write the result (the drill's figures) here
    """

    stream: str = ""
    rollback: str = ""
    threshold_only: bool = False
    parts: bool = False
    watch: bool = False
    config: Path = CONFIG
    events_db: str = ""
    control: str = ""
    weights: str = ""
    json: Path | None = None


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``adapt`` to the ``vadstream`` subcommands."""
    a = sub.add_parser("adapt", help="fine-tune a camera's model on its normal footage and "
                       "the events labelled normal, validate, swap it in live; `adapt drill` "
                       "measures it on Ped2")
    a.add_argument("action", nargs="?", choices=("drill",),
                   help="drill: the Ped2 drill (a scene change, labels, adaptation, Test "
                   "clips before and after)")
    add_dataclass_flags(a, AdaptOptions)
    group = a.add_argument_group("adapt: settings (stream.adapt.AdaptConfig)")
    add_dataclass_flags(group, AdaptConfig)
    a.set_defaults(func=cmd_adapt)


def _settings(args: argparse.Namespace):
    """The pipeline config and its ``adapt:`` with the flags given laid over it."""
    from stream.pipeline import load_pipeline

    path = args.config or CONFIG
    pipe = load_pipeline(path if path.is_file() else None)
    given = overrides_from_args(args, AdaptConfig)
    if "normal" in given:
        given["normal"] = tuple(given["normal"])
    return pipe, dataclasses.replace(pipe.adapt, **given)


def _low_priority(config: AdaptConfig) -> None:
    """Lower this process's priority and its MXNet threads (before MXNet loads)."""
    os.nice(max(0, config.nice - os.nice(0)))
    for key in ("OMP_NUM_THREADS", "MXNET_CPU_WORKER_NTHREADS"):
        os.environ[key] = str(config.threads)


def cmd_adapt(args: argparse.Namespace) -> int:
    from stream.wire.endpoints import connect_endpoint

    pipe, config = _settings(args)
    if args.action == "drill":
        from stream.apps.adapt_drill import run_drill

        # Not lowered here: the drill's detector runs at this process's priority, its
        # `vadstream adapt` child lowers its own.
        return run_drill(args.json or Path("adapt_drill.json"), config)
    events_db = args.events_db or pipe.detector.events_db
    control = args.control or (connect_endpoint(pipe.detector.control)
                               if pipe.detector.control else "")
    if (args.stream or args.rollback or args.watch) and not control:
        raise ValueError("no control endpoint: give --control (or detector.control in the "
                         "config): adapt swaps weights on the running detector")
    if args.rollback:
        from train.adapt_live import rollback

        entry = rollback(args.rollback, config, control, echo=print)
        print(f"adapt: stream {args.rollback} back on {entry['weights']} (was "
              f"{entry['previous']})")
        return 0
    _low_priority(config)
    if args.watch:
        from train.adapt_live import watch

        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        ids = [s.id for s in pipe.streams]
        log.info("adapt: watching %s for %d new normal labels each", ids or "every stream",
                 config.min_labels)
        watch(lambda: ids or _detector_streams(control), config, events_db, control, stop,
              mqtt=pipe.mqtt)
        return 0
    if not args.stream:
        raise ValueError("give --stream ID (or --rollback ID, --watch, or `adapt drill`)")
    if args.parts:
        from train.adapt import collect_parts

        counts = collect_parts(args.stream, events_db, config.out_dir)
        print(f"adapt: stream {args.stream}: parts written under "
              f"{Path(config.out_dir) / args.stream / 'parts'}: " +
              ", ".join(f"{n} in {k}" for k, n in counts.items()))
        return 0
    from train.adapt import AdaptRefused
    from train.adapt_live import adapt_live

    try:
        result = adapt_live(args.stream, config, events_db, control, bool(args.threshold_only),
                            args.weights or "", mqtt=pipe.mqtt, echo=print)
    except AdaptRefused as err:
        print(f"adapt: refused: {err}")
        if args.json:
            args.json.write_text(json.dumps({"refused": err.check, "reason": str(err),
                                             **err.result.summary()}, indent=2))
        return 3
    if args.json:
        args.json.write_text(json.dumps(result.summary(), indent=2))
    t = result.threshold
    print(f"adapt: stream {args.stream} now on {result.weights} (was {result.previous}); "
          f"{t['rule']} threshold {t['before']:.4g} -> {t['after']:.4g}; "
          f"{result.cpu_seconds:.0f} s CPU; `vadstream adapt --rollback {args.stream}` "
          "undoes it")
    return 0


def _detector_streams(control: str) -> list[str]:
    from stream.wire.control import ControlClient, ControlError

    try:
        with ControlClient(control, timeout_s=10.0) as client:
            return sorted(client.state().get("streams", {}))
    except ControlError as err:
        log.warning("adapt: cannot ask the detector for its streams: %s", err)
        return []
