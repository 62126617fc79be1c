"""int8 on the onnxruntime backend against its fp32: frame AUC on Ped2 Test001-006, the
decisions that changed, start-up and frames/s (a measurement for docs/export.md, not a test;
the quantisation settings were chosen on training clips, never from these numbers).

    PYTHONPATH=. python docs/results/onnx_int8.py [--data ../shared/data/UCSDped2]
        [--json docs/results/onnx_int8.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import mxnet as mx
import numpy as np

from models import STAE_WEIGHTS
from stream.bench.timing import cpu_name
from stream.detector.engine import Engine
from stream.detector.precision import cpu_flags, isa_summary
from train.evaluate import evaluate

PRECISIONS = ("fp32", "int8")
AUC_KEYS = ("frame_auc_paper", "frame_auc_online", "frame_auc_paper_macro",
            "frame_auc_online_macro")


def aucs(model: str, data: str) -> dict:
    """Frame AUCs of both precisions, their differences and the changed decisions."""
    results, decisions = {}, {}
    for p in PRECISIONS:
        result, clips = evaluate(model, data, ctx=mx.cpu(), precision=p, backend="onnxruntime")
        results[p] = {k: result[k] for k in (*AUC_KEYS, "f1_online", "frames")}
        decisions[p] = np.concatenate([c.decisions for c in clips])
    delta = {k: results["int8"][k] - results["fp32"][k] for k in AUC_KEYS}
    return {**results, "delta": delta, "max_abs_delta": max(abs(v) for v in delta.values()),
            "decisions_changed": int((decisions["int8"] != decisions["fp32"]).sum())}


def speed(model: str, batches: tuple[int, ...] = (1, 4, 8), runs: int = 10) -> dict:
    """Start-up seconds and frames/s of the full network at each batch (best of ``runs``,
    the engines taking turns), and of the tail network a live detector runs at batch 4:
    onnxruntime at both precisions and, for the best fp32, MXNet's engine at fp32."""
    out: dict = {"startup_s": {}, "frames_per_s": {}}
    engines = {}
    for backend, p in (("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("mxnet", "fp32")):
        started = time.perf_counter()
        key = p if backend == "onnxruntime" else f"{backend} {p}"
        engines[key] = Engine(model, "cpu", p, max_batch=max(batches), decode_last=6,
                              backend=backend)
        out["startup_s"][key] = round(time.perf_counter() - started, 1)
    rng = np.random.default_rng(0)
    for e in engines.values():
        e.batch[:] = rng.random(e.batch.shape, np.float32)
    window = engines["fp32"].window
    for label, n, tail in [*((f"full batch {b}", b, False) for b in batches),
                           ("tail batch 4", 4, True)]:
        best = dict.fromkeys(engines, math.inf)
        for _ in range(runs):
            for p, e in engines.items():
                started = time.perf_counter()
                e.run(n, tail=tail)
                best[p] = min(best[p], time.perf_counter() - started)
        fps = {p: round(n * window / t, 1) for p, t in best.items()}
        out["frames_per_s"][label] = {
            **fps, "int8/fp32": round(fps["int8"] / fps["fp32"], 2),
            "int8/best fp32": round(fps["int8"] / max(fps["fp32"], fps["mxnet fp32"]), 2)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(STAE_WEIGHTS))
    parser.add_argument("--data", default="../shared/data/UCSDped2")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import onnxruntime

    result = {"model": args.model, "data": args.data, "backend": "onnxruntime",
              "onnxruntime": onnxruntime.__version__, "cpu": cpu_name(),
              "isa": isa_summary(cpu_flags()), "cores": os.cpu_count(),
              "threads": os.environ.get("OMP_NUM_THREADS", ""),
              "load_average_start": os.getloadavg()[0],
              "auc": aucs(args.model, args.data), **speed(args.model),
              "load_average_end": os.getloadavg()[0]}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
