"""``vadstream bench``: how fast this machine runs the model, against what it could.

Measured in one run so that ratios hold even where absolute speeds drift: the machine's
fp32 matrix-multiply peak first, then the model at several batch sizes.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path

import mxnet as mx
import numpy as np

from models.weights import load_weights
from stream.engine import pick_context

BATCHES = (1, 2, 4, 8)


def device_name(ctx: mx.Context) -> str:
    """The CPU model or GPU name the benchmark ran on."""
    if ctx.device_type == "gpu":
        try:
            import subprocess
            return subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                                  capture_output=True, text=True, timeout=10).stdout.strip()
        except OSError:
            return f"gpu({ctx.device_id})"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def _timed(fn, min_seconds: float) -> float:
    """Seconds per call of ``fn`` (after one warm-up), over at least ``min_seconds``."""
    fn()
    n, start = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds and n >= 2:
            return elapsed / n


def peak_gflops(ctx: mx.Context, n: int = 4096, seconds: float = 3.0) -> float:
    """Practical fp32 peak: the faster matrix multiply (GFLOP/s) of MXNet on ``ctx`` and,
    on a CPU, of NumPy's BLAS (here faster than the BLAS bundled with MXNet)."""
    a = mx.nd.random.uniform(shape=(n, n), ctx=ctx)
    b = mx.nd.random.uniform(shape=(n, n), ctx=ctx)
    best = _timed(lambda: mx.nd.dot(a, b).wait_to_read(), seconds)
    if ctx.device_type == "cpu":
        x, y = a.asnumpy(), b.asnumpy()
        best = min(best, _timed(lambda: x @ y, seconds))
    return 2 * n ** 3 / best / 1e9


def conv_macs(out_hw: int, out_c: int, k: int, in_c: int) -> int:
    return out_hw * out_hw * out_c * k * k * in_c


def gflop_per_frame(window: int, spatial: tuple[int, int], temporal: tuple[int, int, int],
                    output_channels: int = 1) -> float:
    """FLOPs (2 per multiply-add) of one 227×227 frame through the STAE, counted from its
    layers; ``output_channels`` is 1 in the paper (2 are computed here, see README)."""
    c1, c2 = spatial
    t1, t2, t3 = temporal
    macs = conv_macs(55, c1, 11, 1) + conv_macs(26, c2, 5, c1)
    for cin, hidden in ((c2, t1), (t1, t2), (t2, t3)):
        macs += conv_macs(26, 4 * hidden, 3, cin) + conv_macs(26, 4 * hidden, 3, hidden)
    # transposed convolutions: every input pixel scatters a k×k×out kernel
    macs += 26 * 26 * t3 * c1 * 5 * 5 + 55 * 55 * c1 * output_channels * 11 * 11
    return 2 * macs / 1e9


def model_fps(model: str | Path, ctx: mx.Context, batches: tuple[int, ...] = BATCHES,
              seconds: float = 3.0) -> dict[int, float]:
    """Frames per second of the autoencoder alone, per batch size (windows of T frames)."""
    net, meta = load_weights(model, ctx)
    net.hybridize(static_alloc=True, static_shape=True)
    out = {}
    for b in batches:
        x = mx.nd.array(np.random.default_rng(0).random((b, meta.window, 227, 227)), ctx=ctx)
        per_call = _timed(lambda x=x: net(x).wait_to_read(), seconds)
        out[b] = b * meta.window / per_call
    return out


def run_bench(model: str | Path, device: str = "auto", seconds: float = 3.0) -> dict:
    """Peak, model throughput per batch size and utilisation, measured in one run."""
    ctx = pick_context(device)
    _, meta = load_weights(model, ctx)
    args = meta.model_args
    peak = peak_gflops(ctx, seconds=seconds)
    flop = gflop_per_frame(meta.window, tuple(args.get("spatial_channels", (128, 64))),
                           tuple(args.get("temporal_channels", (64, 32, 64))),
                           output_channels=2)
    fps = model_fps(model, ctx, seconds=seconds)
    best = max(fps.values())
    return {"device": device_name(ctx), "context": str(ctx), "peak_gflops": round(peak, 1),
            "gflop_per_frame": round(flop, 3),
            "gflop_per_frame_paper": round(gflop_per_frame(
                meta.window, tuple(args.get("spatial_channels", (128, 64))),
                tuple(args.get("temporal_channels", (64, 32, 64)))), 3),
            "model_fps": {str(b): round(v, 1) for b, v in fps.items()},
            "utilization": round(best * flop / peak, 3),
            "reduced_precision": None, "pipeline": None}


def format_bench(result: dict) -> str:
    """The terminal table."""
    lines = [f"device          {result['device']} ({result['context']})",
             f"peak fp32       {result['peak_gflops']:.1f} GFLOP/s (matrix multiply)",
             f"model cost      {result['gflop_per_frame']:.3f} GFLOP/frame "
             f"(paper's layers: {result['gflop_per_frame_paper']:.3f})"]
    for b, v in result["model_fps"].items():
        lines.append(f"batch {b:>2}        {v:7.1f} frames/s = "
                     f"{v * result['gflop_per_frame']:.1f} GFLOP/s")
    lines.append(f"utilization     {result['utilization']:.3f} of the fp32 peak (best batch)")
    return "\n".join(lines)
