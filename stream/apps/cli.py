"""The ``vadstream`` command: one parser for every subcommand (capture, detect, subscribe,
record, serve, mqtt, keys, events, run, cluster, users, demo, train, collect, calibrate,
bench, export, evaluate) and the entry point that runs one and prints one clear line on failure."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import zmq

from stream.apps.flags import add_dataclass_flags, overrides_from_args
from stream.dashboard.config import ServeConfig
from stream.defaults import (
    BACKENDS,
    DASHBOARD_HTTP,
    EVENTS_DB,
    FRAMES_ENDPOINT,
    PED2,
    PRECISIONS,
    TOPICS_ENDPOINT,
    WEIGHTS,
)

# MXNet's own default OpenMP thread count ran the model 1.5x slower on a 2-core machine than
# one thread per available core (29 vs 44 frames/s, `vadstream bench`); set before MXNet loads.
os.environ.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0))))

log = logging.getLogger("vadstream")
DEVICES = ("auto", "cpu", "gpu")


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


def _stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM, so loops end cleanly."""
    stop = threading.Event()

    def handler(signum, _frame):
        log.info("received %s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def cmd_capture(args: argparse.Namespace) -> int:
    from stream.capture.pusher import FramePusher, run_capture
    from stream.wire.security import client_from_args

    stop = _stop_on_signals()
    source = open_live_with_retry(args, stop)
    if source is None:
        return 0
    with source, \
            FramePusher(args.connect, hwm=args.hwm,
                        curve=client_from_args(args.curve_key, args.curve_server)) as pusher:
        log.info("capturing %s as stream %s to %s", source.name, args.stream_id, args.connect)
        stats = run_capture(source, args.stream_id, pusher, encoding=args.encoding,
                            fps=args.fps, loop=args.loop, stop=stop,
                            max_backoff_s=args.max_backoff)
    log.info("capture %s done: %d read, %d sent, %d dropped", args.stream_id, stats.read,
             stats.sent, stats.dropped)
    return 0


def open_live_with_retry(args: argparse.Namespace, stop: threading.Event):
    """Open the capture's source; a camera or stream URL that is down is retried with
    backoff until it answers (or ``stop``), anything else fails at once."""
    from stream.capture.pusher import backoff_delay
    from stream.capture.sources import URL_SCHEMES, open_source

    live = args.source.isdigit() or args.source.lower().startswith(URL_SCHEMES)
    attempt = 0
    while not stop.is_set():
        try:
            return open_source(args.source, fps=args.fps, timeout_s=args.watchdog)
        except OSError as err:
            if not live:
                raise
            delay = backoff_delay(attempt, args.max_backoff)
            log.warning("%s; retrying in %.1f s (attempt %d)", err, delay, attempt + 1)
            attempt += 1
            stop.wait(delay)
    return None


def cmd_detect(args: argparse.Namespace) -> int:
    from stream.detector.config import DetectorConfig
    from stream.detector.events import EventConfig
    from stream.detector.loop import Detector
    from stream.pipeline import load_pipeline

    pipe = load_pipeline(args.config, events=overrides_from_args(args, EventConfig),
                         **overrides_from_args(args, DetectorConfig))
    stop = _stop_on_signals()
    detector = Detector(pipe.detector, pipe.scorer, pipe.events, pipe.annotator.build(),
                        streams=pipe.streams, clips=pipe.clips, retention=pipe.retention)
    if args.ready_file is not None:
        write_ready_file(args.ready_file, {**detector.endpoints, "pid": os.getpid()})
        log.info("ready: frames on %s, topics on %s (%s)", detector.endpoints["bind"],
                 detector.endpoints["publish"], args.ready_file)
    try:
        detector.run(stop)
    finally:
        if args.ready_file is not None:
            args.ready_file.unlink(missing_ok=True)
    return 0


def write_ready_file(path: Path, content: dict) -> None:
    """Write ``content`` as JSON to ``path`` atomically: a reader never sees half of it."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(content) + "\n")
    os.replace(partial, path)


def cmd_subscribe(args: argparse.Namespace) -> int:
    from stream.apps.console import HUMAN_TOPICS, print_human, wants_human
    from stream.wire.security import client_from_args
    from stream.wire.subscriber import Subscriber, print_messages

    stop = _stop_on_signals()
    # Piped (or --json-lines): every topic as JSON Lines, as scripts have always read it.
    human = wants_human(args, sys.stdout)
    topics = args.topic or (list(HUMAN_TOPICS) if human else [""])
    if human and not args.topic and args.save_overlays is not None:
        topics.append("overlay.")
    with Subscriber(args.connect, topics,
                    curve=client_from_args(args.curve_key, args.curve_server)) as sub:
        if human:
            print_human(sub, sys.stdout, stop, save_overlays=args.save_overlays,
                        count=args.count, status_every_s=args.status_every)
        else:
            print_messages(sub, sys.stdout, stop, save_overlays=args.save_overlays,
                           count=args.count)
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    from stream.wire.security import client_from_args
    from stream.wire.subscriber import Subscriber, record

    stop = _stop_on_signals()
    with Subscriber(args.connect, [f"overlay.{args.stream}", f"eos.{args.stream}"],
                    curve=client_from_args(args.curve_key, args.curve_server)) as sub:
        frames = record(sub, args.stream, args.out, args.fps, stop)
    log.info("wrote %d frames to %s", frames, args.out)
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    import json

    from stream.store import EventStore
    from stream.times import parse_time
    from stream.wire.topics import AlertMessage

    if not Path(args.db).is_file():
        raise FileNotFoundError(f"events store {args.db} not found; the detector writes it "
                                "(see --events-db)")
    if args.action:
        return _label_event(args)
    with EventStore(args.db) as store:
        stored = store.query(stream=args.stream, since=parse_time(args.since),
                             limit=args.limit)
        labels = store.labels(sorted({row.get("id", "") for row in stored}))
    # Read as alert messages, so they print as `vadstream subscribe` prints live ones
    # (with "v": 1), whichever detector version stored them.
    for a in (AlertMessage.from_dict(row, topic=f"{args.db}: alert {row.get('id', '?')}")
              for row in stored):
        label = labels.get(a.id)
        if args.json:
            print(a.to_json() if label is None else json.dumps(
                {**json.loads(a.to_json()), "label": label}))
        else:
            end = "" if a.end_seq is None else f" end_seq {a.end_seq}"
            clip = "" if a.clip_path is None else f" clip {a.clip_path}"
            tag = "" if label is None else f" label {label['label']} by {label['who']}"
            print(f"{a.ts:.3f} {a.stream} {a.type:6} {a.id[:12]} start_seq {a.start_seq}{end} "
                  f"score {a.score:.1f} peak {a.peak_score:.1f}{clip}{tag}")
    return 0


def _label_event(args: argparse.Namespace) -> int:
    """``vadstream events label ID normal|anomaly``: label an event in the store."""
    import getpass

    from stream.store import LABELS, EventStore, UnknownEventError

    if len(args.action) != 3 or args.action[0] != "label":
        raise ValueError(f"`vadstream events {' '.join(args.action)[:80]}` is not understood: "
                         f"`vadstream events label ID {'|'.join(LABELS)}` labels an event, "
                         "`vadstream events` lists them")
    _, event_id, label = args.action
    with EventStore(args.db) as store:
        try:
            done = store.label(event_id, label, who=getpass.getuser(), via="cli")
        except UnknownEventError as err:
            raise ValueError(str(err)) from None
    print(f"event {done['id']} ({done['stream']}) labelled {done['label']} by {done['who']}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    # Imports nothing of MXNet: the dashboard runs beside the detector, not as one.
    from stream.dashboard.app import run_serve

    config = ServeConfig(**overrides_from_args(args, ServeConfig))
    stop = _stop_on_signals()
    run_serve(config, stop, ready=lambda url: print(
        f"dashboard: {url} (detector topics {config.connect}, events {config.events_db})",
        flush=True))
    return 0


def cmd_mqtt(args: argparse.Namespace) -> int:
    # Imports nothing of MXNet: the bridge runs beside the detector.
    from stream.mqtt.bridge import Bridge
    from stream.mqtt.config import MqttConfig

    bridge = Bridge(MqttConfig(enabled=True, **overrides_from_args(args, MqttConfig)))
    bridge.run(_stop_on_signals())
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from stream.wire.security import make_keys

    for public in make_keys(args.dir, args.name or ["server", "client"]):
        print(f"{public} (secret: {public}_secret)")
    print(f"detector: --curve-secret-key {args.dir}/server.key_secret --curve-allowed DIR "
          "(a folder with the admitted clients' .key files); clients: --curve-key "
          f"{args.dir}/client.key_secret --curve-server {args.dir}/server.key")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from stream.apps.supervisor import supervise
    from stream.cluster.config import is_cluster_config
    from stream.pipeline import load_pipeline

    if is_cluster_config(args.config):   # configs/cluster.yaml: shards on a Ray cluster
        from stream.apps.cluster import run_cluster

        return run_cluster(args.config, _stop_on_signals())
    pipe = load_pipeline(args.config)
    if not pipe.streams and not pipe.supervisor.control:
        raise ValueError(f"{args.config} configures no streams; add entries under `streams:` "
                         "(or set supervisor.control to add cameras while it runs)")
    supervise(args.config, pipe, _stop_on_signals())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    import tempfile

    from stream.apps.console import wants_human
    from stream.apps.demo import dashboard_address, run_demo, write_summary

    model, source, fps = args.model, args.source, args.fps
    extra = ["--precision", args.precision] if args.precision else []
    with tempfile.TemporaryDirectory(prefix="vadstream-conveyor-") as parts:
        if args.conveyor:
            from stream.apps import conveyor

            model = model or str(conveyor.CONVEYOR_WEIGHTS)
            conveyor.check_weights(model)
            if source is None:   # validation parts only: never one the model trained on
                source = str(conveyor.conveyor_sample(model, Path(parts), args.parts))
            fps = conveyor.CONVEYOR_FPS if fps is None else fps
            extra += conveyor.CONVEYOR_EVENTS
        model = model or str(WEIGHTS)
        source = source or str(PED2)
        stream_id = args.stream_id or ("conveyor" if args.conveyor else "demo")
        stop = _stop_on_signals()
        http = None if args.no_dashboard else dashboard_address(args.http)
        print(f"vadstream demo: {source} -> detector -> alerts (video: {args.video})",
              flush=True)
        # The alert lines are the demo's own output: readable on a terminal, JSON Lines
        # when piped; the processes' logs only say what went wrong (all of it: --verbose).
        result = run_demo(source, model, args.video, stream=stream_id, fps=fps,
                          device=args.device, stop=stop, http=http, hold=args.hold,
                          extra_detect_args=extra or None,
                          printer_args=["--pretty" if wants_human(args, sys.stdout)
                                        else "--json-lines"],
                          child_args=["--verbose" if args.verbose else "--quiet"],
                          mqtt=args.mqtt)
    interrupted = stop.is_set() and result.eos is None
    print(f"demo: {result.frames} frames scored at {result.fps:.1f} frames/s, "
          f"{sum(a.type == 'start' for a in result.alerts)} event(s), "
          f"{len(result.alerts)} alert message(s); overlay video {args.video}", flush=True)
    if args.json:
        write_summary(args.json, result, source=source, model=model,
                      video=str(args.video), interrupted=interrupted)
    return 130 if interrupted else 0


def cmd_train(args: argparse.Namespace) -> int:
    from train.config import load_train_config
    from train.trainer import train

    job = load_train_config(args.config)
    if job.kind == "images":
        from train.image_trainer import train_images

        path = train_images(args.data or job.data, args.out or job.out, model=job.model,
                            model_args=job.model_args, contract=job.contract,
                            config=job.training, scorer=job.scorer, normal=job.normal,
                            ctx=job.context(args.device), resume=args.resume)
        print(f"wrote {path}")
        return 0
    path = train(args.data or job.data, args.out or job.out, model=job.model,
                 model_args=job.model_args, contract=job.contract, config=job.training,
                 scorer=job.scorer, stride=job.stride, ctx=job.context(args.device),
                 resume=args.resume)
    print(f"wrote {path}")
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from stream.capture.collect import SPLIT, CollectConfig, collect
    from stream.capture.sources import open_source

    config = CollectConfig(**overrides_from_args(args, CollectConfig))
    stop = _stop_on_signals()
    # fps=None: a file is read at its own rate (``--fps`` subsamples, it does not pace)
    with open_source(args.source, fps=None, timeout_s=args.watchdog) as source, \
            tqdm(total=round(config.minutes * 60), unit="s", desc="collect", disable=None,
                 bar_format="{desc} {n_fmt}/{total_fmt} s |{bar}| [{elapsed}]{postfix}",
                 file=sys.stderr) as bar:
        def progress(r) -> None:
            bar.update(int(r.seconds) - bar.n)
            bar.set_postfix_str(f"kept {r.kept}, still {r.still}", refresh=False)

        result = collect(source, args.out, config, progress=progress,
                         should_stop=stop.is_set)
    split = args.out / SPLIT
    print(f"collect: watched {result.seconds:.0f} s of {args.source}: kept {result.kept} of "
          f"{result.sampled} frames ({result.bytes / 1e6:.0f} MB) in {len(result.clips)} "
          f"clip(s) under {split} "
          f"({result.still} still, {result.short} in clips under {config.min_clip_frames} "
          "frames)")
    if not result.clips:
        print(f"collect: nothing was kept: nothing moved enough (--motion {config.motion:g} "
              "of the pixels), or the source ended; watch longer or lower --motion")
        return 1
    print(f"collect: next: vadstream train --config configs/collect_example.yaml --data "
          f"{args.out} --out models/weights/<camera> (it holds the last clips out to "
          "calibrate on: collect a few clips at least)")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from stream.detector.engine import pick_context
    from train.calibrate import recalibrate

    try:
        smoothing = tuple(int(k) for k in args.smoothing.split(",") if k.strip())
        if not smoothing or min(smoothing) < 1:
            raise ValueError
    except ValueError:
        raise SystemExit(f"vadstream calibrate: --smoothing takes frame counts of at least 1, "
                         f"comma-separated (e.g. 1,3,5), got {args.smoothing!r}") from None
    from models.weights import read_meta

    if "classes" in read_meta(args.model).provenance:      # trained on an image data set
        from train.image_trainer import recalibrate_images

        cal = recalibrate_images(args.model, rule_by=args.rule_by,
                                 false_alarm_rate=args.false_alarm_rate,
                                 ctx=pick_context(args.device), threshold_by=args.threshold_by,
                                 false_alarm_cap=args.false_alarm_cap)
        threshold = cal["thresholds"][cal["rule"]]
        real = cal.get("validation", {}).get("real_defect_auc") or {}
        at = cal.get("validation", {}).get("at_threshold", {}).get(cal["rule"])
        print(f"rule {cal['rule']} threshold {threshold:.4g} by "
              f"{cal['operating_point']['by']}"
              + (f" (validation defects' AUC: {', '.join(f'{r} {a:.3f}' for r, a in real.items())})"
                 if real else "")
              + (f"; validation accuracy {at['accuracy']:.3f}, recall {at['recall']:.3f}, "
                 f"false alarms {at['false_alarm_rate']:.3f}" if at else ""))
        return 0
    cal = recalibrate(args.model, args.data, stride=args.stride,
                      false_alarm_rate=args.false_alarm_rate, ctx=pick_context(args.device),
                      smoothing=smoothing)
    mean = ", ".join(f"{r} {a:.3f}" for r, a in cal["selection"]["mean_auc"].items())
    print(f"rule {cal['rule']} threshold {cal['thresholds'][cal['rule']]:.2f} over "
          f"{cal['frames']} normal frames, smoothed over {cal['smooth']} frame(s) "
          f"(synthetic-anomaly AUC: {mean})")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import json

    if args.threads:
        if "mxnet" in sys.modules:
            raise RuntimeError("--threads must take effect before MXNet loads")
        # this process (the model figures) and the detectors it starts alike
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    from stream.apps.bench import format_bench, run_bench
    from stream.apps.bench_capacity import parse_candidates

    sweep = tuple(int(n) for n in args.sweep.split(",") if n.strip())
    capacity = None if args.skip_capacity else {
        "fps": args.capacity_fps, "seconds": args.capacity_seconds,
        "budget_ms": args.capacity_latency_ms, "max_cameras": args.capacity_max,
        "candidates": parse_candidates(args.capacity_only) if args.capacity_only else None}
    result = run_bench(args.model, args.device, seconds=args.seconds, data=args.data,
                       streams=args.streams, sweep=sweep, pipeline="pipeline" not in args.skip,
                       reduced="reduced" not in args.skip, stride=args.stride,
                       families=args.families, peers="peers" not in args.skip,
                       capacity=capacity)
    result["omp_threads"] = int(os.environ["OMP_NUM_THREADS"])
    print(f"network threads {result['omp_threads']} (OpenMP, bench and detectors alike)")
    print(format_bench(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.plot:
        from stream.apps.bench_plot import plot_bench

        plot_bench(result, args.plot)
    return 0


def cmd_soak(args: argparse.Namespace) -> int:
    import json

    from stream.apps.soak import ped2_sources, run_soak, soak_table

    def interrupt(signum, _frame):
        raise KeyboardInterrupt   # unwinds run_soak, which stops `vadstream run` first

    # explicit: a job started in the background by a script inherits SIGINT ignored
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)

    def show(sample: dict) -> None:
        print(f"soak t={sample['t_s']:.0f}s detector RSS {sample['rss_mb']:.0f} MB, "
              f"{sample['open_files']} files, {sample['threads']} threads; captures "
              f"{sample['captures_rss_mb']:.0f} MB; store {sample['store_mb']:.2f} MB, clips "
              f"{sample['clips_mb']:.2f} MB; scored {sample['scored']}, dropped "
              f"{sample['dropped']}; alerts {sample['alerts_published']} published, "
              f"{sample['alerts_stored']} stored", flush=True)

    result = run_soak(args.streams, args.minutes, interval_s=args.interval, fps=args.fps,
                      sources=args.source or ped2_sources(args.data), base=args.config,
                      work=args.work, on_sample=show, model=args.model,
                      precision=args.precision, device=args.device)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(soak_table(result, every_s=max(300.0, args.interval)))
    growing = ", ".join(result["growing"]) or "nothing"
    print(f"soak: {result['verdict']} ({growing} grew past its bound); {args.json}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from models.export import export_onnx
    from models.weights import WEIGHTS_DIR

    model = args.model
    if not Path(f"{model}.json").is_file() and (WEIGHTS_DIR / f"{model}.json").is_file():
        model = str(WEIGHTS_DIR / model)      # a shipped model by name
    out = args.out or Path(f"{Path(model).name}.{args.format}")
    onnx_path, json_path = export_onnx(model, out, outputs=args.outputs)
    print(f"wrote {onnx_path} and {json_path} (inference form of {model})")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from stream.capture.frames import is_image_dataset
    from stream.detector.engine import pick_context

    if args.normal is not None or is_image_dataset(args.data):
        if args.precision is not None or args.backend != "mxnet":
            raise ValueError("--precision and --backend evaluate the live detector's network "
                             "on video clips; an image set is scored by the trained network: "
                             "leave them out")
        from train.evaluate_images import evaluate_images, format_image_table, write_image_outputs

        result, details = evaluate_images(args.model, args.data, normal=args.normal,
                                          ctx=pick_context(args.device), split=args.split)
        print(format_image_table(result))
        write_image_outputs(result, details, args.json, args.plots)
        return 0
    from train.evaluate import evaluate, format_table, write_outputs

    result, clips = evaluate(args.model, args.data, stride=args.stride,
                             ctx=pick_context(args.device), precision=args.precision,
                             backend=args.backend)
    print(format_table(result))
    write_outputs(result, clips, args.json, args.plots)
    return 0


def _curve_client_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--curve-key", help="your CURVE .key_secret (when the detector needs one)")
    p.add_argument("--curve-server", help="the detector's public .key")


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


def _output_flags(parser: argparse.ArgumentParser) -> None:
    """``--json-lines`` and ``--pretty`` (added on first use: the console module reads the
    wire protocol, which loads OpenCV)."""
    from stream.apps.console import add_output_flags

    add_output_flags(parser)


def _console_flags(parser: argparse.ArgumentParser) -> None:
    """``subscribe``'s output flags (added on first use, as :func:`_output_flags`)."""
    from stream.apps.console import STATUS_EVERY_S

    _output_flags(parser)
    parser.add_argument("--status-every", type=float, default=STATUS_EVERY_S, metavar="S",
                        help="readable lines: print the detector's status at most every S "
                        "seconds (0: never; default %(default)g)")


def _collect_flags(parser: argparse.ArgumentParser) -> None:
    """``collect``'s flags: one per ``CollectConfig`` field (its module reads frames, which
    loads MXNet's input contract: added on first use)."""
    from stream.capture.collect import CollectConfig

    add_dataclass_flags(parser, CollectConfig, rename={"hold_s": "hold"})


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    p = Parser(prog="vadstream", description="Real-time video anomaly detection: models of "
               "normal footage (a ConvLSTM next-frame predictor by default) score every "
               "stream live and publish alerts.")
    loud = p.add_mutually_exclusive_group()
    loud.add_argument("--verbose", "-v", action="store_true", help="debug logs and "
                      "tracebacks, and MXNet's own messages")
    loud.add_argument("--quiet", "-q", action="store_true", help="log warnings and errors "
                      "only")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("capture", help="read a source and push its frames to a detector")
    c.add_argument("--source", required=True, help="camera index, URL, video file or folder")
    c.add_argument("--stream-id", required=True)
    c.add_argument("--connect", default=FRAMES_ENDPOINT)
    c.add_argument("--fps", type=float, help="replay rate (folders 10, files their own; 0: max)")
    c.add_argument("--loop", action="store_true", help="replay a finite source forever")
    c.add_argument("--encoding", choices=["raw", "jpeg"], default="raw")
    c.add_argument("--hwm", type=int, default=8, help="frames queued before dropping")
    c.add_argument("--watchdog", type=float, default=10.0,
                   help="seconds without frames before a stream URL is reconnected")
    c.add_argument("--max-backoff", type=float, default=30.0,
                   help="longest wait between reconnection attempts")
    _curve_client_flags(c)
    c.set_defaults(func=cmd_capture)

    d = sub.add_parser("detect", help="score frames and publish alerts, scores and overlays",
                       populate=_detector_flags)
    d.add_argument("--config", type=Path, help="pipeline YAML (its detector/scorer/events); "
                   "its values replace the defaults below, and flags replace both")
    d.add_argument("--ready-file", type=Path, help="once both sockets are bound, write "
                   "{\"bind\", \"publish\", \"pid\"} here as JSON, with the ports chosen for "
                   "endpoints ending in :* (removed at a clean exit)")
    d.set_defaults(func=cmd_detect)

    s = sub.add_parser("subscribe", help="print published messages: a readable line each on "
                       "a terminal, JSON Lines when piped", populate=_console_flags)
    s.add_argument("--connect", default=TOPICS_ENDPOINT)
    s.add_argument("--topic", action="append", help="topic prefix (repeatable; default all "
                   "as JSON Lines, alert, eos and status as readable lines)")
    s.add_argument("--save-overlays", type=Path, help="folder for overlay JPEGs")
    s.add_argument("--count", type=int, default=0, help="exit after this many messages")
    _curve_client_flags(s)
    s.set_defaults(func=cmd_subscribe)

    r = sub.add_parser("record", help="write a stream's overlays to an MP4")
    r.add_argument("--connect", default=TOPICS_ENDPOINT)
    r.add_argument("--stream", required=True)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--fps", type=float, default=10.0)
    _curve_client_flags(r)
    r.set_defaults(func=cmd_record)

    w = sub.add_parser("serve", help="web dashboard: live overlays, score charts, alerts with "
                       "snapshots, JSON API and Prometheus /metrics")
    add_dataclass_flags(w, ServeConfig, rename={"history_s": "history"})
    w.set_defaults(func=cmd_serve)

    from stream.mqtt.config import MqttConfig

    q = sub.add_parser("mqtt", help="publish alerts, scores and snapshots on an MQTT broker, "
                       "with Home Assistant discovery and threshold/detection commands")
    add_dataclass_flags(q, MqttConfig, skip={"enabled"})
    q.set_defaults(func=cmd_mqtt)

    y = sub.add_parser("keys", help="make CURVE key pairs for the detector and its clients")
    y.add_argument("--dir", default="keys")
    y.add_argument("--name", action="append", help="key pair names (default: server, client)")
    y.set_defaults(func=cmd_keys)

    v = sub.add_parser("events", help="alerts from the events store; `events label ID "
                       "normal|anomaly` labels one")
    v.add_argument("action", nargs="*", metavar="label ID normal|anomaly",
                   help="label an event: normal (a false alarm) or anomaly (a true one)")
    v.add_argument("--db", "--events-db", dest="db", default=EVENTS_DB,
                   help="the detector's --events-db")
    v.add_argument("--stream")
    v.add_argument("--since", help="Unix seconds, ISO 8601, or an age (15m, 2h)")
    v.add_argument("--limit", type=int, help="at most this many, the newest")
    v.add_argument("--json", action="store_true", help="JSON Lines")
    v.set_defaults(func=cmd_events)

    u = sub.add_parser("run", help="run the detector and every configured capture, supervised")
    u.add_argument("--config", type=Path, default=Path("configs/pipeline.yaml"))
    u.set_defaults(func=cmd_run)

    from stream.apps.cluster import add_cluster_parser

    add_cluster_parser(sub)

    from stream.apps.users import add_users_parser

    add_users_parser(sub)

    from stream.apps.commands import adapt

    adapt.register(sub)

    m = sub.add_parser("demo", help="the whole pipeline on UCSD Ped2 (or --source), or on "
                       "cast parts passing a camera (--conveyor)", populate=_output_flags)
    m.add_argument("--source", help="any capture source (default: UCSD Ped2 test clips in "
                   "../shared/data; with --conveyor, validation parts of the model)")
    m.add_argument("--model", help="weights (default: models/weights/ped2_predictor; with "
                   "--conveyor, models/weights/casting_cam)")
    m.add_argument("--conveyor", action="store_true", help="conveyor inspection: a seeded "
                   "mix of good and defective cast parts the model never trained on (its "
                   "validation split), 2 parts/s, one event per defective part")
    m.add_argument("--parts", type=int, default=40, help="parts on the belt with --conveyor")
    m.add_argument("--stream-id", help="stream id (default: demo; conveyor with --conveyor)")
    m.add_argument("--fps", type=float, help="replay rate (0: as fast as the detector goes; "
                   "--conveyor: 2)")
    m.add_argument("--device", choices=DEVICES, default="auto")
    m.add_argument("--precision", choices=["auto", "fp32", "bf16", "int8"],
                   help="the detector's model precision (default: its own, auto)")
    m.add_argument("--video", type=Path, default=Path("out/demo/overlays.mp4"))
    m.add_argument("--json", type=Path, help="write a summary with every alert here")
    m.add_argument("--http", help=f"HOST:PORT of the dashboard (default {DASHBOARD_HTTP}, or "
                   "a free port when that one is taken)")
    m.add_argument("--no-dashboard", action="store_true", help="do not start vadstream serve")
    m.add_argument("--hold", action="store_true", help="when the source ends, keep the "
                   "detector and dashboard up until Ctrl-C")
    m.add_argument("--mqtt", metavar="URL", help="also run the MQTT bridge (vadstream mqtt) "
                   "on this broker, e.g. mqtt://127.0.0.1:1883")
    m.set_defaults(func=cmd_demo)

    t = sub.add_parser("train", help="train a model: on normal footage, or on an image "
                       "folder per class (data.kind: images)")
    t.add_argument("--config", type=Path, default=Path("configs/ped2.yaml"))
    t.add_argument("--data", help="dataset root, Train/ folder or clip folder")
    t.add_argument("--out", type=Path, help="weights stem to write")
    t.add_argument("--device", choices=DEVICES, default="auto")
    t.add_argument("--resume", action="store_true")
    t.set_defaults(func=cmd_train)

    o = sub.add_parser("collect", help="record a camera's normal footage as clip folders "
                       "for `vadstream train`, skipping what does not move",
                       populate=_collect_flags)
    o.add_argument("--source", required=True, help="camera index, URL, video file or folder")
    o.add_argument("--out", type=Path, required=True, help="dataset folder to write (clips "
                   "go to OUT/Train/TrainNNN, after any already there)")
    o.add_argument("--watchdog", type=float, default=10.0,
                   help="seconds a stream URL may give no frames before it is given up")
    o.set_defaults(func=cmd_collect)

    k = sub.add_parser("calibrate", help="re-derive the rule and threshold of trained weights "
                       "from their held-out normal clips")
    k.add_argument("--model", default=str(WEIGHTS))
    k.add_argument("--data", help="dataset root (default: the one recorded at training)")
    k.add_argument("--stride", type=int, help="detector stride (default: the recorded one)")
    k.add_argument("--false-alarm-rate", type=float)
    k.add_argument("--smoothing", default="1", help="moving-mean lengths (frames) to compare "
                   "for every rule, e.g. 1,3,5 (default: 1, none)")
    k.add_argument("--rule-by", choices=["synthetic", "defects"], help="image autoencoders: "
                   "choose the rule by synthetic defects or by the validation split's real "
                   "defective images (default: as trained)")
    k.add_argument("--threshold-by", choices=["false_alarms", "synthetic", "defects"],
                   help="image autoencoders: each rule's threshold at --false-alarm-rate on "
                   "the normal validation images, or the best balanced accuracy against the "
                   "synthetic defects or the validation split's real defective images "
                   "(default: as trained)")
    k.add_argument("--false-alarm-cap", type=float, help="image autoencoders, --threshold-by "
                   "synthetic or defects: the largest share of normal validation images "
                   "flagged (default: as trained, else 0.1)")
    k.add_argument("--device", choices=DEVICES, default="auto")
    k.set_defaults(func=cmd_calibrate)

    from stream.apps.bench_capacity import (
        CAPACITY_FPS,
        CAPACITY_MAX,
        CAPACITY_SECONDS,
        LATENCY_BUDGET_MS,
    )

    b = sub.add_parser("bench", help="throughput against this machine's peak: the model, "
                       "reduced precision, the whole pipeline, and how many cameras it holds")
    b.add_argument("--model", default=str(WEIGHTS),
                   help="weights to time, any model (default: the pipeline's, "
                   f"{WEIGHTS.name}); peak utilization needs an STAE's FLOP count and is "
                   "skipped for other models")
    b.add_argument("--device", choices=DEVICES, default="auto")
    b.add_argument("--seconds", type=float, default=3.0,
                   help="time per throughput figure (pipeline runs: three times this)")
    b.add_argument("--streams", type=int, default=4, help="cameras at 10 fps in the live run")
    b.add_argument("--sweep", default="1,2,4,8", help="stream counts of the flooded runs")
    b.add_argument("--stride", type=int, help="detector stride of the live measurements "
                   "(default: the one the weights were calibrated for)")
    b.add_argument("--data", type=Path, default=PED2,
                   help="UCSD Ped2 root: Test clips replayed and evaluated, Train for int8 "
                   "calibration")
    b.add_argument("--skip", action="append", default=[],
                   choices=["reduced", "pipeline", "peers"],
                   help="leave a part out (repeatable)")
    b.add_argument("--families", nargs="+", metavar="WEIGHTS",
                   help="other models' weights whose live scored frames/s are timed beside "
                   "--model's, in turns")
    b.add_argument("--capacity-fps", type=float, default=CAPACITY_FPS,
                   help="frames/s of each camera "
                   "in the capacity search (the most cameras with 0 dropped and p99 latency "
                   "within budget, on the real pipeline, per backend and precision)")
    b.add_argument("--capacity-seconds", type=float, default=CAPACITY_SECONDS,
                   help="how long each capacity trial must hold")
    b.add_argument("--capacity-latency-ms", type=float, default=LATENCY_BUDGET_MS,
                   help="the p99 frame-to-score latency a capacity trial must hold")
    b.add_argument("--capacity-max", type=int, default=CAPACITY_MAX,
                   help="the most cameras the capacity search tries")
    b.add_argument("--capacity-only", metavar="BACKEND:PRECISION,...",
                   help="search only these, e.g. mxnet:auto,mxnet:fp32 (default: precision "
                   "auto, then fp32 and each precision auto would time here, on each backend)")
    b.add_argument("--skip-capacity", action="store_true",
                   help="leave the capacity search out (quick runs)")
    b.add_argument("--json", type=Path)
    b.add_argument("--plot", type=Path, help="PNG of frames/s by batch size and by streams")
    b.add_argument("--threads", type=int, help="OpenMP threads of the network, here and in "
                   "the detectors the bench starts (default: one per available core); fewer "
                   "leaves cores to captures and scoring")
    b.set_defaults(func=cmd_bench)

    a = sub.add_parser("soak", help="run the pipeline (`vadstream run`) with looping cameras "
                       "for a while, sampling memory, files, threads, store and alerts")
    a.add_argument("--streams", type=int, default=8, help="looping cameras")
    a.add_argument("--minutes", type=float, default=30.0, help="length of the measurement, "
                   "from when every camera has been scored")
    a.add_argument("--json", type=Path, required=True, help="the report")
    a.add_argument("--interval", type=float, default=60.0, help="seconds between samples")
    a.add_argument("--fps", type=float, default=10.0, help="frames/s of each camera")
    a.add_argument("--config", type=Path, default=Path("configs/pipeline.yaml"),
                   help="pipeline YAML whose sections are kept; its streams, endpoints "
                   "(free loopback ports), events store and clips (in --work) are replaced")
    a.add_argument("--model", help="weights (default: the config's)")
    a.add_argument("--precision", choices=PRECISIONS, help="default: the config's")
    a.add_argument("--device", choices=DEVICES, help="default: the config's")
    a.add_argument("--source", type=Path, action="append", help="what the cameras replay, "
                   "in turn (repeatable; default: the UCSD Ped2 test clips under --data)")
    a.add_argument("--data", type=Path, default=PED2, help="UCSD Ped2 root")
    a.add_argument("--work", type=Path, help="folder of the config, logs, events store and "
                   "clips, kept (default: a temporary one, removed)")
    a.set_defaults(func=cmd_soak)

    x = sub.add_parser("export", help="write a model's inference form as ONNX, with its "
                       "input contract and calibration beside it")
    x.add_argument("--model", default=str(WEIGHTS), help="weights stem, or the name of "
                   "shipped weights (ped2_predictor, ped2_stae, casting_cam, ...)")
    x.add_argument("--format", choices=["onnx"], default="onnx")
    x.add_argument("--out", type=Path, help="the export's stem: writes OUT.onnx, OUT.json "
                   "(contract, calibration) and OUT.npz (calibration arrays, if any); "
                   "default: the weights' name in the current folder")
    x.add_argument("--outputs", type=int, help="frames per window the network outputs, "
                   "where the family has a smaller network than the full one (the STAE "
                   "decoding its newest frames); default: the full one")
    x.set_defaults(func=cmd_export)

    e = sub.add_parser("evaluate", help="frame and pixel AUC on a UCSD-style test set; image "
                       "AUC, accuracy, precision, recall, F1 on class folders of images")
    e.add_argument("--model", default=str(WEIGHTS))
    e.add_argument("--data", required=True, help="dataset root, e.g. ../shared/data/UCSDped2, "
                   "or a folder of class folders, e.g. ../shared/data/casting/train")
    e.add_argument("--normal", help="the normal class folder of an image set (default: "
                   "recognised by name, e.g. ok_front); implies image evaluation")
    e.add_argument("--split", choices=["all", "val"], default="all", help="images: all of "
                   "--data, or only the validation split recorded in the weights (--data "
                   "their training folder)")
    e.add_argument("--stride", type=int, help="detector stride (default: the calibrated one)")
    e.add_argument("--device", choices=DEVICES, default="auto")
    e.add_argument("--precision", choices=PRECISIONS, help="score through the live detector's "
                   "network at this precision (default: the trained network as it is)")
    e.add_argument("--backend", choices=BACKENDS, default="mxnet", help="the live detector's "
                   "backend (onnxruntime: fp32 unless --precision says otherwise)")
    e.add_argument("--json", type=Path, help="write the results here")
    e.add_argument("--plots", type=Path, help="folder for ROC and per-clip plots (images: "
                   "roc.png and heatmaps.png)")
    e.set_defaults(func=cmd_evaluate)
    return p


#: Set to 1, reads as ``--verbose``; ``--verbose`` sets it for the processes a command
#: starts (``run``'s detector and captures, ``demo``'s, the bench's).
VERBOSE_ENV = "VADSTREAM_VERBOSE"
#: Commands that run a network in their own process: MXNet's C++ log lines are filtered
#: out of their standard error (``stream.apps.quiet``) unless ``--verbose``.
NETWORK_COMMANDS = frozenset({"detect", "bench", "train", "calibrate", "evaluate"})


@contextlib.contextmanager
def _verbosity(args: argparse.Namespace) -> Iterator[None]:
    """MXNet's messages off (``--verbose``: on, here and in the processes started)."""
    from stream.apps.quiet import quiet_mxnet

    if not args.verbose:
        with quiet_mxnet(filter_stderr=args.command in NETWORK_COMMANDS):
            yield
        return
    before = os.environ.get(VERBOSE_ENV)
    os.environ[VERBOSE_ENV] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(VERBOSE_ENV, None)
        else:
            os.environ[VERBOSE_ENV] = before


def main(argv: list[str] | None = None) -> int:
    """Entry point: run a subcommand; print one clear line on failure."""
    args = build_parser().parse_args(argv)
    args.verbose = args.verbose or os.environ.get(VERBOSE_ENV) == "1"
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    try:
        with _verbosity(args):
            return args.func(args)
    except KeyboardInterrupt:
        return 130
    except (ValueError, OSError, RuntimeError, zmq.ZMQError) as err:
        if args.verbose:
            raise
        print(f"vadstream {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
