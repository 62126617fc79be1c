"""The ``vadstream`` command."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

import zmq

# MXNet's own default OpenMP thread count ran the model 1.5x slower on a 2-core machine than
# one thread per available core (29 vs 44 frames/s, `vadstream bench`); set before MXNet loads.
os.environ.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0))))

log = logging.getLogger("vadstream")
DEFAULT_FRAMES = "tcp://127.0.0.1:5555"
DEFAULT_TOPICS = "tcp://127.0.0.1:5556"
# models.DEFAULT_WEIGHTS, spelt out: importing models loads MXNet, which `serve`, `capture`
# and `subscribe` never need (a test keeps the two equal).
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[2] / "models" / "weights" / "ped2_stae"
#: stream.apps.demo.DEFAULT_SOURCE, spelt out for the same reason: the UCSD Ped2 root.
PED2 = Path(__file__).resolve().parents[3] / "shared" / "data" / "UCSDped2"


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
    from stream.detector.loop import Detector
    from stream.pipeline import load_pipeline

    pipe = load_pipeline(args.config, bind=args.bind, publish=args.publish, model=args.model,
                         device=args.device, precision=args.precision, stride=args.stride,
                         max_batch=args.max_batch,
                         events_db=args.events_db, curve_secret_key=args.curve_secret_key,
                         curve_allowed=args.curve_allowed)
    stop = _stop_on_signals()
    detector = Detector(pipe.detector, pipe.scorer, pipe.events, pipe.annotator.build())
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
    from stream.wire.security import client_from_args
    from stream.wire.subscriber import Subscriber, print_messages

    stop = _stop_on_signals()
    with Subscriber(args.connect, args.topic or [""],
                    curve=client_from_args(args.curve_key, args.curve_server)) as sub:
        print_messages(sub, sys.stdout, stop, save_overlays=args.save_overlays, count=args.count)
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

    if not Path(args.db).is_file():
        raise FileNotFoundError(f"events store {args.db} not found; the detector writes it "
                                "(see --events-db)")
    with EventStore(args.db) as store:
        alerts = store.query(stream=args.stream, since=parse_time(args.since),
                             limit=args.limit)
    for a in alerts:
        if args.json:
            print(json.dumps(a))
        else:
            end = "" if a.get("end_seq") is None else f" end_seq {a['end_seq']}"
            print(f"{a.get('ts', 0):.3f} {a['stream']} {a['type']:6} {a['id'][:12]} "
                  f"start_seq {a['start_seq']}{end} score {a['score']:.1f} "
                  f"peak {a['peak_score']:.1f}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    # Imports nothing of MXNet: the dashboard runs beside the detector, not as one.
    from stream.dashboard.app import run_serve
    from stream.dashboard.config import ServeConfig

    config = ServeConfig(connect=args.connect, http=args.http, events_db=args.events_db,
                         history_s=args.history, curve_key=args.curve_key or "",
                         curve_server=args.curve_server or "")
    stop = _stop_on_signals()
    run_serve(config, stop, ready=lambda url: print(
        f"dashboard: {url} (detector topics {config.connect}, events {config.events_db})",
        flush=True))
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
    from stream.pipeline import load_pipeline

    pipe = load_pipeline(args.config)
    if not pipe.streams:
        raise ValueError(f"{args.config} configures no streams; add entries under `streams:`")
    supervise(args.config, pipe, _stop_on_signals())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from stream.apps.demo import DEFAULT_SOURCE, dashboard_address, run_demo, write_summary

    source = args.source or str(DEFAULT_SOURCE)
    stop = _stop_on_signals()
    http = None if args.no_dashboard else dashboard_address(args.http)
    print(f"vadstream demo: {source} -> detector -> alerts (video: {args.video})", flush=True)
    result = run_demo(source, args.model, args.video, stream=args.stream_id, fps=args.fps,
                      device=args.device, stop=stop, http=http, hold=args.hold)
    interrupted = stop.is_set() and result.eos is None
    print(f"demo: {result.frames} frames scored at {result.fps:.1f} frames/s, "
          f"{sum(a['type'] == 'start' for a in result.alerts)} event(s), "
          f"{len(result.alerts)} alert message(s); overlay video {args.video}", flush=True)
    if args.json:
        write_summary(args.json, result, source=source, model=args.model,
                      video=str(args.video), interrupted=interrupted)
    return 130 if interrupted else 0


def cmd_train(args: argparse.Namespace) -> int:
    from train.config import load_train_config
    from train.trainer import train

    job = load_train_config(args.config)
    path = train(args.data or job.data, args.out or job.out, model=job.model,
                 model_args=job.model_args, contract=job.contract, config=job.training,
                 scorer=job.scorer, stride=job.stride, ctx=job.context(args.device),
                 resume=args.resume)
    print(f"wrote {path}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from stream.detector.engine import pick_context
    from train.calibrate import recalibrate

    cal = recalibrate(args.model, args.data, stride=args.stride,
                      false_alarm_rate=args.false_alarm_rate, ctx=pick_context(args.device))
    mean = ", ".join(f"{r} {a:.3f}" for r, a in cal["selection"]["mean_auc"].items())
    print(f"rule {cal['rule']} threshold {cal['thresholds'][cal['rule']]:.2f} over "
          f"{cal['frames']} normal frames (synthetic-anomaly AUC: {mean})")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import json

    from stream.apps.bench import format_bench, run_bench

    sweep = tuple(int(n) for n in args.sweep.split(",") if n.strip())
    result = run_bench(args.model, args.device, seconds=args.seconds, data=args.data,
                       streams=args.streams, sweep=sweep, pipeline="pipeline" not in args.skip,
                       reduced="reduced" not in args.skip, stride=args.stride)
    print(format_bench(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.plot:
        from stream.apps.bench_plot import plot_bench

        plot_bench(result, args.plot)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from stream.detector.engine import pick_context
    from train.evaluate import evaluate, format_table, write_outputs

    result, clips = evaluate(args.model, args.data, stride=args.stride,
                             ctx=pick_context(args.device))
    print(format_table(result))
    write_outputs(result, clips, args.json, args.plots)
    return 0


def _curve_client_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--curve-key", help="your CURVE .key_secret (when the detector needs one)")
    p.add_argument("--curve-server", help="the detector's public .key")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    p = argparse.ArgumentParser(prog="vadstream", description="Real-time video anomaly "
                                "detection with a ConvLSTM autoencoder.")
    p.add_argument("--verbose", "-v", action="store_true", help="debug logs and tracebacks")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("capture", help="read a source and push its frames to a detector")
    c.add_argument("--source", required=True, help="camera index, URL, video file or folder")
    c.add_argument("--stream-id", required=True)
    c.add_argument("--connect", default=DEFAULT_FRAMES)
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

    d = sub.add_parser("detect", help="score frames and publish alerts, scores and overlays")
    d.add_argument("--config", type=Path, help="pipeline YAML (its detector/scorer/events)")
    d.add_argument("--bind", help=f"frame endpoint (default {DEFAULT_FRAMES})")
    d.add_argument("--publish", help=f"topic endpoint (default {DEFAULT_TOPICS})")
    d.add_argument("--model", help=f"weights (default {DEFAULT_WEIGHTS})")
    d.add_argument("--device", choices=["auto", "cpu", "gpu"])
    d.add_argument("--precision", choices=["auto", "fp32", "bf16", "int8"],
                   help="model precision (default auto: bf16/int8 where the CPU has the "
                   "instructions for it, else fp32)")
    d.add_argument("--stride", type=int, help="frames between windows")
    d.add_argument("--max-batch", type=int, help="windows per forward pass")
    d.add_argument("--events-db", help="SQLite file of every alert (default events.sqlite3; "
                   "'' to disable)")
    d.add_argument("--curve-secret-key", help="the detector's .key_secret: admit only CURVE "
                   "clients")
    d.add_argument("--curve-allowed", help="folder of admitted clients' .key files")
    d.add_argument("--ready-file", type=Path, help="once both sockets are bound, write "
                   "{\"bind\", \"publish\", \"pid\"} here as JSON, with the ports chosen for "
                   "endpoints ending in :* (removed at a clean exit)")
    d.set_defaults(func=cmd_detect)

    s = sub.add_parser("subscribe", help="print published messages as JSON Lines")
    s.add_argument("--connect", default=DEFAULT_TOPICS)
    s.add_argument("--topic", action="append", help="topic prefix (repeatable; default all)")
    s.add_argument("--save-overlays", type=Path, help="folder for overlay JPEGs")
    s.add_argument("--count", type=int, default=0, help="exit after this many messages")
    _curve_client_flags(s)
    s.set_defaults(func=cmd_subscribe)

    r = sub.add_parser("record", help="write a stream's overlays to an MP4")
    r.add_argument("--connect", default=DEFAULT_TOPICS)
    r.add_argument("--stream", required=True)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--fps", type=float, default=10.0)
    _curve_client_flags(r)
    r.set_defaults(func=cmd_record)

    w = sub.add_parser("serve", help="web dashboard: live overlays, score charts, alerts with "
                       "snapshots, JSON API and Prometheus /metrics")
    w.add_argument("--connect", default=DEFAULT_TOPICS, help="the detector's topic endpoint")
    w.add_argument("--http", default="127.0.0.1:8080", help="HOST:PORT to listen on")
    w.add_argument("--events-db", default="events.sqlite3", help="the detector's --events-db "
                   "(read only)")
    w.add_argument("--history", type=float, default=300.0, help="seconds of scores charted")
    _curve_client_flags(w)
    w.set_defaults(func=cmd_serve)

    y = sub.add_parser("keys", help="make CURVE key pairs for the detector and its clients")
    y.add_argument("--dir", default="keys")
    y.add_argument("--name", action="append", help="key pair names (default: server, client)")
    y.set_defaults(func=cmd_keys)

    v = sub.add_parser("events", help="alerts from the events store")
    v.add_argument("--db", default="events.sqlite3", help="the detector's --events-db")
    v.add_argument("--stream")
    v.add_argument("--since", help="Unix seconds, ISO 8601, or an age (15m, 2h)")
    v.add_argument("--limit", type=int, help="at most this many, the newest")
    v.add_argument("--json", action="store_true", help="JSON Lines")
    v.set_defaults(func=cmd_events)

    u = sub.add_parser("run", help="run the detector and every configured capture, supervised")
    u.add_argument("--config", type=Path, default=Path("configs/pipeline.yaml"))
    u.set_defaults(func=cmd_run)

    m = sub.add_parser("demo", help="the whole pipeline on UCSD Ped2 (or --source)")
    m.add_argument("--source", help="any capture source (default: UCSD Ped2 test clips in "
                   "../shared/data)")
    m.add_argument("--model", default=str(DEFAULT_WEIGHTS))
    m.add_argument("--stream-id", default="demo")
    m.add_argument("--fps", type=float, help="replay rate (0: as fast as the detector goes)")
    m.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto")
    m.add_argument("--video", type=Path, default=Path("out/demo/overlays.mp4"))
    m.add_argument("--json", type=Path, help="write a summary with every alert here")
    m.add_argument("--http", help="HOST:PORT of the dashboard (default 127.0.0.1:8080, or a "
                   "free port when that one is taken)")
    m.add_argument("--no-dashboard", action="store_true", help="do not start vadstream serve")
    m.add_argument("--hold", action="store_true", help="when the source ends, keep the "
                   "detector and dashboard up until Ctrl-C")
    m.set_defaults(func=cmd_demo)

    t = sub.add_parser("train", help="train the autoencoder on normal footage")
    t.add_argument("--config", type=Path, default=Path("configs/ped2.yaml"))
    t.add_argument("--data", help="dataset root, Train/ folder or clip folder")
    t.add_argument("--out", type=Path, help="weights stem to write")
    t.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto")
    t.add_argument("--resume", action="store_true")
    t.set_defaults(func=cmd_train)

    k = sub.add_parser("calibrate", help="re-derive the rule and threshold of trained weights "
                       "from their held-out normal clips")
    k.add_argument("--model", default=str(DEFAULT_WEIGHTS))
    k.add_argument("--data", help="dataset root (default: the one recorded at training)")
    k.add_argument("--stride", type=int, help="detector stride (default: the recorded one)")
    k.add_argument("--false-alarm-rate", type=float)
    k.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto")
    k.set_defaults(func=cmd_calibrate)

    b = sub.add_parser("bench", help="throughput against this machine's peak: the model, "
                       "reduced precision, the whole pipeline")
    b.add_argument("--model", default=str(DEFAULT_WEIGHTS))
    b.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto")
    b.add_argument("--seconds", type=float, default=3.0,
                   help="time per throughput figure (pipeline runs: three times this)")
    b.add_argument("--streams", type=int, default=4, help="cameras at 10 fps in the live run")
    b.add_argument("--sweep", default="1,2,4,8", help="stream counts of the flooded runs")
    b.add_argument("--stride", type=int, help="detector stride of the live measurements "
                   "(default: the one the weights were calibrated for)")
    b.add_argument("--data", type=Path, default=PED2,
                   help="UCSD Ped2 root: Test clips replayed and evaluated, Train for int8 "
                   "calibration")
    b.add_argument("--skip", action="append", default=[], choices=["reduced", "pipeline"],
                   help="leave a part out (repeatable)")
    b.add_argument("--json", type=Path)
    b.add_argument("--plot", type=Path, help="PNG of frames/s by batch size and by streams")
    b.set_defaults(func=cmd_bench)

    e = sub.add_parser("evaluate", help="frame and pixel AUC on a UCSD-style test set")
    e.add_argument("--model", default=str(DEFAULT_WEIGHTS))
    e.add_argument("--data", required=True, help="dataset root, e.g. ../shared/data/UCSDped2")
    e.add_argument("--stride", type=int, help="detector stride (default: the calibrated one)")
    e.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto")
    e.add_argument("--json", type=Path, help="write the results here")
    e.add_argument("--plots", type=Path, help="folder for ROC and per-clip plots")
    e.set_defaults(func=cmd_evaluate)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point: run a subcommand; print one clear line on failure."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    try:
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
