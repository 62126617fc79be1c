"""N Ped2 cameras through ``vadstream run``, measured from the status topic: the figures of
docs/results/bench.md's *32 cameras* run (``run_32cams.json``).

Writes a pipeline config like ``configs/pipeline_32.yaml`` (the Ped2 test clips looped, its
ports moved off the defaults so as not to meet other jobs), starts ``vadstream run`` in its
own process group, waits until every stream is scored, then reads the status topic at the
start and the end of a measured stretch: frames offered, received, scored, dropped and
overrun, the inference thread's busy time, and each process kind's CPU cores. With
``--profile``, runs ``vadstream detect`` under cProfile and the captures beside it instead.

    nice -n 5 python docs/results/live_run.py --cameras 32 --fit \\
        --extra '{backend: onnxruntime}' --seconds 60 --out docs/results/run_32cams.json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from stream.bench.pipeline import cpu_seconds
from stream.defaults import PED2, WEIGHTS
from stream.wire.subscriber import Subscriber
from stream.wire.topics import StatusMessage, StreamStatus

COUNTS = ("received", "scored", "dropped", "overrun")


def config(args: argparse.Namespace, tmp: Path) -> tuple[Path, dict, list[dict]]:
    """The pipeline YAML: ``args.cameras`` streams over the Ped2 test clips."""
    clips = [c for c in sorted((PED2 / "Test").glob("Test0*")) if not c.name.endswith("_gt")]
    detector = {"bind": f"tcp://127.0.0.1:{args.port}",
                "publish": f"tcp://127.0.0.1:{args.port + 1}",
                "control": f"tcp://127.0.0.1:{args.port + 2}",
                "events_db": str(tmp / "events.db")} | (yaml.safe_load(args.extra) or {})
    streams = [{"id": f"cam{i:02d}", "source": str(clips[i % len(clips)]), "fps": args.fps,
                "loop": True} | ({"fit": True} if args.fit else {})
               for i in range(args.cameras)]
    path = tmp / "pipeline.yaml"
    path.write_text(yaml.safe_dump({"detector": detector, "streams": streams}))
    return path, detector, streams


def start(args: argparse.Namespace, path: Path, detector: dict, streams: list[dict]
          ) -> list[subprocess.Popen]:
    """``vadstream run`` (or, profiled, detect and the captures), each in its own group."""
    cli = [sys.executable, "-m", "stream.apps.cli"]
    if not args.profile:
        return [subprocess.Popen([*cli, "run", "--config", str(path)], start_new_session=True)]
    kids = [subprocess.Popen([sys.executable, "-m", "cProfile", "-o", args.profile,
                              "-m", "stream.apps.cli", "detect", "--config", str(path)],
                             start_new_session=True)]
    for s in streams:
        fit = ["--fit", str(WEIGHTS)] if args.fit else []
        kids.append(subprocess.Popen([*cli, "capture", "--source", s["source"], "--stream-id",
                                      s["id"], "--connect", detector["bind"], "--fps",
                                      str(args.fps), "--loop", *fit], start_new_session=True))
    return kids


def status(sub: Subscriber, timeout: float) -> StatusMessage:
    """The next status message published after this call (queued ones are skipped)."""
    while sub.socket.poll(0):
        sub.socket.recv_multipart()
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        msg = sub.recv(500)
        if isinstance(msg, StatusMessage):
            return msg
    raise RuntimeError(f"no status message within {timeout:g} s")


def totals(msg: StatusMessage) -> dict[str, int]:
    live = [s for s in msg.streams.values() if isinstance(s, StreamStatus)]
    return {k: sum(getattr(s, k) for s in live) for k in COUNTS} | {"streams": len(live)}


def processes(marks: tuple[bytes, ...]) -> dict[int, str]:
    """This run's processes (their command line names a mark) by kind."""
    found = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            argv = (p / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(m in a for a in argv for m in marks):
            found[int(p.name)] = next((k for k in ("detect", "capture", "run")
                                       if k.encode() in argv), "other")
    return found


def measure(args: argparse.Namespace, sub: Subscriber, marks: tuple[bytes, ...]) -> dict:
    began = time.monotonic()
    msg = status(sub, 300)
    while totals(msg)["streams"] < args.cameras and time.monotonic() - began < 300:
        msg = status(sub, 30)
    time.sleep(args.warmup)
    first, procs = status(sub, 10), processes(marks)
    cpu0, load0, t0 = {p: cpu_seconds(p) for p in procs}, os.getloadavg(), time.monotonic()
    time.sleep(args.seconds)
    last = status(sub, 10)
    cpu1, elapsed = {p: cpu_seconds(p) for p in procs}, time.monotonic() - t0
    a, b = totals(first), totals(last)
    delta = {k: b[k] - a[k] for k in COUNTS}
    span = last.ts - first.ts
    offered = args.cameras * args.fps * span
    cores: dict[str, float] = {}
    for pid, kind in procs.items():
        cores[kind] = round(cores.get(kind, 0.0) + (cpu1[pid] - cpu0[pid]) / elapsed, 3)
    inference = None if last.inference is None else {
        "busy_s": round(last.inference.seconds - first.inference.seconds, 2),
        "frames": last.inference.frames - first.inference.frames}
    return {"cameras": args.cameras, "fps": args.fps, "seconds": round(span, 1),
            "offered": round(offered), **delta,
            "scored_share": round(delta["scored"] / offered, 3),
            "received_share": round(delta["received"] / offered, 3),
            "precision": last.precision, "models": [vars(m) for m in last.models or []],
            "inference": inference, "cpu_cores_by_process": cores,
            "load_average_start": [round(x, 2) for x in load0],
            "load_average_end": [round(x, 2) for x in os.getloadavg()], "fit": args.fit}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=32)
    parser.add_argument("--fps", type=float, default=10)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--warmup", type=float, default=10)
    parser.add_argument("--port", type=int, default=27555)
    parser.add_argument("--fit", action="store_true", help="captures fit their frames")
    parser.add_argument("--extra", default="", help="detector keys, as YAML")
    parser.add_argument("--profile", default="", help="cProfile output of the detector")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vadstream-live-"))
    path, detector, streams = config(args, tmp)
    kids = start(args, path, detector, streams)
    sub = Subscriber(detector["publish"], ["status"])
    try:
        result = measure(args, sub, (str(path).encode(), detector["bind"].encode()))
        print(json.dumps(result, indent=1))
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    finally:
        sub.close()
        for kid in kids:      # the whole group: a run's captures and detector too
            os.killpg(kid.pid, signal.SIGINT)
        for kid in kids:
            try:
                kid.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(kid.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
