"""The whole pipeline under load, for ``vadstream bench``.

Real ``vadstream capture`` processes replay the Ped2 test frames over loopback TCP into a
real ``vadstream detect`` (annotator and publisher on), and this process subscribes to
the score and overlay topics, so overlays are drawn and JPEG-encoded for every frame.
Latency is from a frame's capture timestamp (in its header) to its score message's
arrival here. Everything shares this machine's cores: the captures' reading and JPEG
decoding and this subscriber's work come out of the detector's CPU time.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from stream.defaults import EVENTS_DB
from stream.processes import ANY_PORT, Child, stop_all, vadstream_command, wait_ready_file
from stream.wire.subscriber import Subscriber
from stream.wire.topics import ScoreMessage, StatusMessage, StreamStatus

log = logging.getLogger(__name__)
#: Offered load of a flooded run, as a multiple of the model's frames/s.
FLOOD_FACTOR = 1.5


def _proc_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def _totals(status: StatusMessage) -> int:
    """Frames lost so far over all tracked streams: dropped before the detector, or overrun."""
    return sum(s.dropped + s.overrun for s in status.streams.values()
               if isinstance(s, StreamStatus))


def _wait_ready(sub: Subscriber, detector: Child, topics: list[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        msg = sub.recv(200)
        if isinstance(msg, StatusMessage) and set(topics) <= set(msg.subscriptions or []):
            return
        if not detector.running:
            raise RuntimeError(f"the detector exited with code {detector.poll()}; run "
                               "`vadstream detect --verbose` to see why")
    raise RuntimeError(f"the detector was not ready within {timeout_s:.0f} s")


def run_pipeline(model: str | Path, device: str, source: str | Path, streams: int,
                 source_fps: float, seconds: float, stride: int, max_batch: int,
                 precision: str = "fp32", warmup_s: float = 3.0,
                 ready_timeout_s: float = 180.0, backend: str = "mxnet",
                 int8_calibration: str = "", fit: bool = False) -> dict:
    """Run captures, detector and subscriber; measure once every stream is scored.

    Args:
        model: Weights.
        device: Detector device.
        source: What each capture replays (looped).
        streams: Capture processes.
        source_fps: Frames/s each capture sends.
        seconds: Length of the measurement.
        stride: Detector stride.
        max_batch: Detector batch.
        precision: Detector precision (``auto``: the one it picks is reported).
        warmup_s: Seconds after the last stream's first score before measuring.
        ready_timeout_s: How long the detector may take to start.
        backend: Detector backend.
        int8_calibration: Folder of normal clips for int8 ("": the weights' own).
        fit: The captures send frames fitted to the model's input contract
            (``vadstream capture --fit``: greyed and resized there, not in the detector).

    Returns:
        ``streams``, ``source_fps``, ``stride``, ``max_batch``, ``fps`` (frames scored per
        second), ``dropped`` (frames lost during the measurement), ``latency_ms``
        (p50/p95/p99), ``rss_mb`` (the detector's largest resident set while measured),
        ``captures_rss_mb`` (the capture processes' resident sets, summed, at their
        largest), ``cpu`` (seconds of CPU per second of each part), ``backend`` and
        ``precision`` (the one the detector runs, as its status reports it).

    Raises:
        RuntimeError: If a process fails or nothing is scored.
    """
    topics = ["score.", "overlay.", "status"]
    with tempfile.TemporaryDirectory(prefix="vadstream-bench-") as tmp, \
            contextlib.ExitStack() as logs:
        def log_file(name: str):
            return logs.enter_context((Path(tmp) / f"{name}.log").open("wb"))

        ready = Path(tmp) / "ready.json"
        detector = Child("detector", vadstream_command(
            "detect", "--bind", ANY_PORT, "--publish", ANY_PORT, "--control", ANY_PORT,
            "--ready-file", str(ready),
            "--model", str(model),
            "--device", device, "--precision", precision, "--stride", str(stride),
            "--max-batch", str(max_batch), "--backend", backend,
            *(["--int8-calibration", int8_calibration] if int8_calibration else []),
            "--events-db", str(Path(tmp) / EVENTS_DB)),
            stderr=log_file("detector"))
        children = [detector]
        sub = None
        try:
            detector.start()
            bound = wait_ready_file(detector, ready, ready_timeout_s)
            sub = Subscriber(bound["publish"], topics)
            _wait_ready(sub, detector, topics[:2], ready_timeout_s)
            captures = [Child(f"capture{k}", vadstream_command(
                "capture", "--source", str(source), "--stream-id", f"cam{k}", "--connect",
                bound["bind"], "--fps", f"{source_fps:g}", "--loop",
                *(["--fit", str(model)] if fit else [])),
                stderr=log_file(f"capture{k}")) for k in range(streams)]
            for capture in captures:
                capture.start()
                children.append(capture)
            return {"precision": precision} | _measure(
                sub, detector, captures, streams, seconds, warmup_s) | {
                "streams": streams, "source_fps": round(source_fps, 2), "stride": stride,
                "max_batch": max_batch, "backend": backend, "fit": fit}
        except RuntimeError as err:
            tail = (Path(tmp) / "detector.log").read_text(errors="replace").splitlines()
            raise RuntimeError(f"{err}; the detector's log ends: {' | '.join(tail[-3:])}") \
                from None
        finally:
            if sub is not None:
                sub.close()
            stop_all(children)


def _measure(sub: Subscriber, detector: Child, captures: list[Child], streams: int,
             seconds: float, warmup_s: float) -> dict:
    seen: set[str] = set()
    deadline = time.monotonic() + 120.0
    while len(seen) < streams:                       # every stream scored at least once
        msg = sub.recv(200)
        if isinstance(msg, ScoreMessage):
            seen.add(msg.stream)
        if not detector.running or time.monotonic() > deadline:
            raise RuntimeError(f"only {len(seen)} of {streams} streams were scored "
                               f"(detector {'running' if detector.running else 'exited'})")
    start = time.monotonic() + warmup_s
    end = start + seconds
    latencies, rss, captures_rss, frames, sampled = [], 0, 0, 0, 0.0
    first = last = None                     # status messages at the start and the end
    cpu0: dict[str, float] = {}
    while (now := time.monotonic()) < end:
        msg = sub.recv(100)
        if now >= start:
            if now >= sampled + 0.5:       # not per message: /proc reads cost CPU
                sampled = now
                rss = max(rss, _proc_kb(detector.proc.pid, "VmRSS"))
                captures_rss = max(captures_rss, sum(_proc_kb(c.proc.pid, "VmRSS")
                                                     for c in captures))
            if not cpu0:
                cpu0 = _cpu_parts(detector, captures)
        if msg is None:
            continue
        if isinstance(msg, ScoreMessage) and now >= start:
            latencies.append(time.time() - msg.ts)
            frames += 1
        elif isinstance(msg, StatusMessage):
            if now < start or first is None:
                first = msg
            last = msg
    cpu1 = _cpu_parts(detector, captures)
    if not frames or first is None or last is None:
        raise RuntimeError("no frame was scored while measuring")
    if first.inference is None or last.inference is None:
        raise RuntimeError("the detector's status reports no inference time; the bench "
                           "needs a detector that does")
    ms = np.percentile(np.array(latencies) * 1000, [50, 95, 99])
    busy = last.inference.seconds - first.inference.seconds
    span = last.ts - first.ts
    return {"fps": round(frames / seconds, 1), "dropped": _totals(last) - _totals(first),
            "latency_ms": {"p50": round(float(ms[0]), 1), "p95": round(float(ms[1]), 1),
                           "p99": round(float(ms[2]), 1)},
            "rss_mb": round(rss / 1024, 1),
            "captures_rss_mb": round(captures_rss / 1024, 1),
            # what the detector runs (precision auto resolved)
            **({"precision": last.precision} if last.precision else {}),
            # the detector's own model throughput in this run, and its share of the time
            # (None when the run was shorter than two status messages)
            "inference": {"fps": round((last.inference.frames - first.inference.frames)
                                       / busy, 1)
                          if busy > 0 else None,
                          "share": round(busy / span, 3) if busy > 0 else None},
            "cpu": {k: round((cpu1[k] - cpu0.get(k, cpu1[k])) / seconds, 2) for k in cpu1}}


def _cpu_parts(detector: Child, captures: list[Child]) -> dict[str, float]:
    return {"detector": cpu_seconds(detector.proc.pid),
            "captures": sum(cpu_seconds(c.proc.pid) for c in captures),
            "subscriber": cpu_seconds(os.getpid())}


def pipeline_report(model: str | Path, device: str, data: Path, streams: int,
                    sweep: tuple[int, ...], seconds: float, model_fps: dict[int, float],
                    window: int, live_scored_fps: float, stride: int,
                    live_fps: float = 10.0) -> dict:
    """The bench's ``pipeline`` entry: ``streams`` cameras at ``live_fps`` (drops and
    latency at the weights' stride), then a flooded run per stream count in ``sweep``
    (stride = window, so every frame passes the network once and frames/s compare with
    the model's), all at the detector's default batch of 4 windows, and what they imply.

    Args:
        model: Weights.
        device: Detector device.
        data: Ped2 root; its Test clips are replayed.
        streams: Cameras of the live run.
        sweep: Stream counts of the flooded runs.
        seconds: Each run's measurement, times three.
        model_fps: The model's fp32 frames/s per batch size (same run).
        window: Frames per window (T).
        live_scored_fps: Frames/s the live detector's network scores alone (at its
            stride, batch 4); with the flooded runs' pipeline efficiency it gives the
            number of cameras this machine sustains.
        stride: Detector stride of the live run.
        live_fps: Frames/s of each camera in the live run.
    """
    source = Path(data) / "Test"
    live_batch = 4   # the batch live_scored_fps was measured at
    warmup = max(1.0, min(3.0, seconds))
    live = run_pipeline(model, device, source, streams, live_fps, 3 * seconds, stride,
                        live_batch, warmup_s=warmup)
    batch_time_ms = live_batch * stride / live_scored_fps * 1000
    live["latency_budget_ms"] = round(stride / live_fps * 1000 + 2 * batch_time_ms, 1)
    live["offered_fps"] = streams * live_fps
    rows = []
    for n in sweep:
        run = run_pipeline(model, device, source, n, FLOOD_FACTOR * model_fps[live_batch] / n,
                           3 * seconds, window, live_batch, warmup_s=warmup)
        run["ratio"] = round(run["fps"] / model_fps[live_batch], 3)
        rows.append(run)
        log.info("flooded, %d stream(s): %.1f frames/s (%.2f of the model), RSS %.0f MB", n,
                 run["fps"], run["ratio"], run["rss_mb"])
    flood = next((r for r in rows if r["streams"] == streams), rows[-1])
    if len(rows) > 1:
        slope = np.polyfit([r["streams"] for r in rows], [r["rss_mb"] for r in rows], 1)[0]
    else:
        slope = None
    # The live network's capacity, less what the rest of the pipeline costs (flooded runs).
    cameras = math.floor(live_scored_fps * flood["ratio"] / live_fps)
    keep = ("streams", "fps", "ratio", "max_batch", "dropped", "rss_mb", "inference", "cpu")
    return live | {"flood": {k: flood[k] for k in keep},
                   "sweep": [{k: r[k] for k in keep} for r in rows],
                   "rss_mb_per_stream": None if slope is None else round(float(slope), 2),
                   "cameras_10fps": cameras}
