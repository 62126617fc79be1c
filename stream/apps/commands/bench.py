"""``vadstream bench`` (throughput against the machine's peak) and ``vadstream soak`` (the
pipeline for a while, sampling what could grow). The measurements themselves live in
``stream.apps.bench*`` and ``stream.apps.soak``."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from stream.apps.bench_capacity import (
    CAPACITY_FPS,
    CAPACITY_MAX,
    CAPACITY_SECONDS,
    LATENCY_BUDGET_MS,
)
from stream.apps.commands.common import DEVICES, add_options, options
from stream.apps.flags import flag
from stream.defaults import PED2, PRECISIONS, WEIGHTS


@dataclass(frozen=True)
class BenchOptions:
    """``vadstream bench``.

    Args:
        model: weights to time, any model; peak utilization needs an STAE's FLOP count
            and is skipped for other models
        device: where the network runs
        seconds: time per throughput figure (pipeline runs: three times this)
        streams: cameras at 10 fps in the live run
        sweep: stream counts of the flooded runs
        stride: detector stride of the live measurements (default: the one the weights
            were calibrated for)
        data: UCSD Ped2 root: Test clips replayed and evaluated, Train for int8
            calibration
        skip: leave a part out (repeatable)
        families: other models' weights whose live scored frames/s are timed beside
            --model's, in turns
        capacity_fps: frames/s of each camera in the capacity search (the most cameras
            with 0 dropped and p99 latency within budget, on the real pipeline, per backend
            and precision)
        capacity_seconds: how long each capacity trial must hold
        capacity_latency_ms: the p99 frame-to-score latency a capacity trial must hold
        capacity_max: the most cameras the capacity search tries
        capacity_only: search only these, e.g. mxnet:auto,mxnet:fp32 (default: precision
            auto, then fp32 and each precision auto would time here, on each backend)
        skip_capacity: leave the capacity search out (quick runs)
        json: write the results here
        plot: PNG of frames/s by batch size and by streams
        threads: OpenMP threads of the network, here and in the detectors the bench starts
            (default: one per available core); fewer leaves cores to captures and scoring
    """

    model: str = flag(str(WEIGHTS), show_default=WEIGHTS.name)
    device: str = flag("auto", choices=DEVICES)
    seconds: float = 3.0
    streams: int = 4
    sweep: str = "1,2,4,8"
    stride: int | None = None
    data: Path = PED2
    skip: list[str] = flag(default_factory=list, action="append",
                           choices=["reduced", "pipeline", "peers"])
    families: list[str] | None = flag(None, nargs="+", metavar="WEIGHTS")
    capacity_fps: float = CAPACITY_FPS
    capacity_seconds: float = CAPACITY_SECONDS
    capacity_latency_ms: float = LATENCY_BUDGET_MS
    capacity_max: int = CAPACITY_MAX
    capacity_only: str | None = flag(None, metavar="BACKEND:PRECISION,...")
    skip_capacity: bool = False
    json: Path | None = None
    plot: Path | None = None
    threads: int | None = None


@dataclass(frozen=True, kw_only=True)
class SoakOptions:
    """``vadstream soak``.

    Args:
        streams: looping cameras
        minutes: length of the measurement, from when every camera has been scored
        json: the report
        interval: seconds between samples
        fps: frames/s of each camera
        config: pipeline YAML whose sections are kept; its streams, endpoints (free
            loopback ports), events store and clips (in --work) are replaced
        model: weights (default: the config's)
        precision: default: the config's
        device: default: the config's
        source: what the cameras replay, in turn (repeatable; default: the UCSD Ped2 test
            clips under --data)
        data: UCSD Ped2 root
        work: folder of the config, logs, events store and clips, kept (default: a
            temporary one, removed)
    """

    streams: int = 8
    minutes: float = 30.0
    json: Path
    interval: float = 60.0
    fps: float = 10.0
    config: Path = Path("configs/pipeline.yaml")
    model: str | None = None
    precision: str | None = flag(None, choices=PRECISIONS)
    device: str | None = flag(None, choices=DEVICES)
    source: list[Path] | None = flag(None, action="append")
    data: Path = PED2
    work: Path | None = None


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``bench`` and ``soak``."""
    b = sub.add_parser("bench", help="throughput against this machine's peak: the model, "
                       "reduced precision, the whole pipeline, and how many cameras it holds")
    add_options(b, BenchOptions)
    b.set_defaults(func=cmd_bench)

    a = sub.add_parser("soak", help="run the pipeline (`vadstream run`) with looping cameras "
                       "for a while, sampling memory, files, threads, store and alerts")
    add_options(a, SoakOptions)
    a.set_defaults(func=cmd_soak)


def cmd_bench(args: argparse.Namespace) -> int:
    """Measure, print the figures, write the JSON and plot asked for."""
    import json

    opts = options(args, BenchOptions)
    if opts.threads:
        if "mxnet" in sys.modules:
            raise RuntimeError("--threads must take effect before MXNet loads")
        # this process (the model figures) and the detectors it starts alike
        os.environ["OMP_NUM_THREADS"] = str(opts.threads)
    from stream.apps.bench import format_bench, run_bench
    from stream.apps.bench_capacity import parse_candidates

    sweep = tuple(int(n) for n in opts.sweep.split(",") if n.strip())
    capacity = None if opts.skip_capacity else {
        "fps": opts.capacity_fps, "seconds": opts.capacity_seconds,
        "budget_ms": opts.capacity_latency_ms, "max_cameras": opts.capacity_max,
        "candidates": parse_candidates(opts.capacity_only) if opts.capacity_only else None}
    result = run_bench(opts.model, opts.device, seconds=opts.seconds, data=opts.data,
                       streams=opts.streams, sweep=sweep, pipeline="pipeline" not in opts.skip,
                       reduced="reduced" not in opts.skip, stride=opts.stride,
                       families=opts.families, peers="peers" not in opts.skip,
                       capacity=capacity)
    result["omp_threads"] = int(os.environ["OMP_NUM_THREADS"])
    print(f"network threads {result['omp_threads']} (OpenMP, bench and detectors alike)")
    print(format_bench(result))
    if opts.json:
        opts.json.parent.mkdir(parents=True, exist_ok=True)
        opts.json.write_text(json.dumps(result, indent=2) + "\n")
    if opts.plot:
        from stream.apps.bench_plot import plot_bench

        plot_bench(result, opts.plot)
    return 0


def cmd_soak(args: argparse.Namespace) -> int:
    """Soak the pipeline; print samples as they come and the verdict at the end."""
    import json

    from stream.apps.soak import ped2_sources, run_soak, soak_table

    opts = options(args, SoakOptions)

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

    result = run_soak(opts.streams, opts.minutes, interval_s=opts.interval, fps=opts.fps,
                      sources=opts.source or ped2_sources(opts.data), base=opts.config,
                      work=opts.work, on_sample=show, model=opts.model,
                      precision=opts.precision, device=opts.device)
    opts.json.parent.mkdir(parents=True, exist_ok=True)
    opts.json.write_text(json.dumps(result, indent=2) + "\n")
    print(soak_table(result, every_s=max(300.0, opts.interval)))
    growing = ", ".join(result["growing"]) or "nothing"
    print(f"soak: {result['verdict']} ({growing} grew past its bound); {opts.json}")
    return 0
