"""The detector's network alone, for the bench: frames/s per batch, the live network
(whole and with encoder reuse, on each backend and reduced precision), other families beside
it, and the onnxruntime peer. Every throughput is the best of three timed runs
(:mod:`stream.bench.timing`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import mxnet as mx
import numpy as np

from models.registry import get_family
from models.scoring import LOOKBACK, ScorerConfig
from models.weights import load_calibration_arrays, load_weights, read_meta
from stream.bench.timing import best_time, best_times
from stream.defaults import BACKENDS
from stream.detector.engine import Engine, get_backend, pick_context
from stream.detector.precision import bf16_possible, scorer_decisions

log = logging.getLogger(__name__)
CPU_BATCHES = (1, 2, 4, 8)
GPU_BATCHES = (1, 2, 4, 8, 16, 32, 64)
#: Frames/s of each camera in the live pipeline run.
LIVE_FPS = 10.0
#: Windows per forward pass of the live measurements: the detector's default batch.
LIVE_BATCH = 4


#: Reduced precisions the bench tries, as (backend, precision): each runs where this CPU
#: and that backend can (bf16: MXNet's oneDNN on AVX-512; int8: both backends).
REDUCED = (("mxnet", "bf16"), ("mxnet", "int8"), ("onnxruntime", "int8"))


def detector_stride(model: str | Path) -> int:
    """The stride the weights were calibrated for (5 if none), at most the frames one
    window of their model scores (as the live detector caps it)."""
    meta = read_meta(model)
    return min(int(meta.calibration.get("stride", 5)),
               get_family(meta.model).temporal(meta).scorable)


def calibration_data(model: str | Path, data: Path) -> str:
    """int8 calibration clips: the weights' own training clips if recorded, else the
    ``Train`` split of ``data`` (normal footage either way)."""
    return "" if read_meta(model).provenance.get("data") else str(data)


def model_fps(model: str | Path, device: str, precision: str, batches: tuple[int, ...],
              seconds: float, int8_calibration: str = "", stride: int | None = None
              ) -> dict[int, float]:
    """Frames per second of the detector's network alone, per batch size (windows of T
    frames), at ``precision``; with ``stride``, frames *scored* per second by the live
    detector's network, which decodes only each window's newest ``stride`` frames and the
    one before them (the error's change)."""
    engine = Engine(model, device, precision, max(batches), int8_calibration,
                    decode_last=None if stride is None else stride + LOOKBACK)
    engine.batch[:] = np.random.default_rng(0).random(engine.batch.shape, np.float32)
    if stride is None:
        return {b: b * engine.window / best_time(lambda b=b: engine.run(b), seconds)
                for b in batches}
    return {b: b * stride / best_time(lambda b=b: engine.run(b, tail=True), seconds)
            for b in batches}


def skip_errors() -> tuple[type[Exception], ...]:
    """What means a backend cannot build or run a precision here (the bench skips it and
    says why): a precision it refuses (ValueError) and each backend's build errors."""
    return (ValueError, *{e for name in BACKENDS for e in get_backend(name).build_errors})


def live_runs(model: str | Path, device: str, stride: int, precision: str = "fp32",
              int8_calibration: str = "", backend: str = "mxnet"
              ) -> dict[str, Callable[[], object]]:
    """What one live job of :data:`LIVE_BATCH` windows at ``stride`` costs once a stream
    runs on ``backend``: ``whole``, the whole network on the windows (decoding only what
    the stride needs); and, where the family splits and the backend builds it at this
    precision, ``reuse``, each window's ``stride`` new frames through the encoder and the
    temporal part on the cached rest (:mod:`stream.detector.reuse`; at int8 kept where it
    decides as the whole network under the weights' scorer, as the live detector keeps it)."""
    meta = read_meta(model)
    family = get_family(meta.model)
    lookback = family.temporal(meta).lookback
    decode = stride + lookback
    scorer = family.scorer(meta, load_calibration_arrays(model, meta), ScorerConfig())
    engine = Engine(model, device, precision, LIVE_BATCH, int8_calibration,
                    decode_last=decode if decode < meta.window else None, reuse=True,
                    decide=scorer_decisions(scorer, lookback), backend=backend)
    engine.batch[:] = np.random.default_rng(0).random(engine.batch.shape, np.float32)
    tail = engine.decode_last != engine.outputs
    runs = {"whole": lambda: engine.run(LIVE_BATCH, tail=tail)}
    if engine.reuse is not None:
        runs["reuse"] = engine.reuse.steady(LIVE_BATCH, stride, engine.decode_last)
    return runs


def live_fps(model: str | Path, device: str, stride: int, seconds: float,
             data: Path | None = None) -> dict:
    """Frames the live detector's network scores per second at ``stride`` and batch
    :data:`LIVE_BATCH`, all timed in turns: at fp32 on each backend (just MXNet on a GPU),
    whole and with encoder reuse where the family splits; and, on a CPU with ``data``
    given (int8 calibration), at each reduced precision of :data:`REDUCED` that runs
    here, with reuse where its backend splits at that precision.

    Returns:
        ``stride``, ``batch``; ``fps``, the fastest fp32 way the detector can run it,
        named by ``best`` (``backend whole|reuse``); ``whole_fps``, MXNet's whole fp32
        network (the detector before encoder reuse and backends: the baseline);
        ``speedup``, their ratio; ``encoder_reuse``, whether the fastest reuses;
        ``by_backend``: ``{backend: {"whole": frames/s, "reuse": frames/s}}`` (fp32);
        ``reduced``: ``{"backend precision whole|reuse": frames/s}``, with
        ``reduced_best``, ``reduced_fps`` and ``reduced_speedup`` (over the baseline)
        for the fastest (their AUC change is the ``reduced_precision`` section's).
    """
    cpu = pick_context(device).device_type == "cpu"
    runs = {(name, "fp32", kind): run for name in (BACKENDS if cpu else ("mxnet",))
            for kind, run in live_runs(model, device, stride, backend=name).items()}
    if cpu and data is not None:
        calibration = calibration_data(model, data)
        for name, p in REDUCED:
            if p == "bf16" and not bf16_possible():
                continue
            try:
                made = live_runs(model, device, stride, p, calibration, backend=name)
            except skip_errors() as err:
                log.warning("live: %s %s cannot run here, skipped: %s", name, p,
                            (str(err).strip().splitlines() or [type(err).__name__])[0])
                continue
            runs.update({(name, p, kind): run for kind, run in made.items()})
    times = best_times(runs, seconds)
    fps = {key: LIVE_BATCH * stride / t for key, t in times.items()}
    fp32 = {(name, kind): v for (name, p, kind), v in fps.items() if p == "fp32"}
    best = max(fp32, key=fp32.get)
    baseline = fp32["mxnet", "whole"]
    by_backend: dict[str, dict[str, float]] = {}
    for (name, kind), v in fp32.items():
        by_backend.setdefault(name, {})[kind] = round(v, 1)
    out = {"stride": stride, "batch": LIVE_BATCH, "fps": round(fp32[best], 1),
           "best": " ".join(best), "whole_fps": round(baseline, 1),
           "speedup": round(fp32[best] / baseline, 3), "encoder_reuse": best[1] == "reuse",
           "by_backend": by_backend}
    reduced = {key: v for key, v in fps.items() if key[1] != "fp32"}
    if reduced:
        top = max(reduced, key=reduced.get)
        out.update(reduced={" ".join(k): round(v, 1) for k, v in reduced.items()},
                   reduced_best=" ".join(top), reduced_fps=round(reduced[top], 1),
                   reduced_speedup=round(reduced[top] / baseline, 3))
    return out


def families_report(models: list[str | Path], device: str, seconds: float) -> list[dict]:
    """Frames each model's network scores per second as the live detector runs it (fp32,
    batch LIVE_BATCH, at the stride its weights were calibrated for, at most the frames a
    window of it can score, decoding only what that stride needs, with encoder reuse where
    its family splits: ``scored_fps``; ``whole_scored_fps`` without), timed in turns in
    one run so the ratios between families hold."""
    rows, runs = [], {}
    for model in models:
        meta = read_meta(model)
        stride = detector_stride(model)
        for kind, run in live_runs(model, device, stride).items():
            runs[str(model), kind] = run
        rows.append({"weights": str(model), "model": meta.model, "window": meta.window,
                     "stride": stride, "size": meta.contract.size,
                     "encoder_reuse": (str(model), "reuse") in runs,
                     # of the loaded network: an unloaded one may defer its shapes
                     "parameters": int(sum(np.prod(p.shape) for p in
                                           load_weights(model)[0].collect_params().values()))})
    times = best_times(runs, seconds)
    for row in rows:
        fps = {kind: LIVE_BATCH * row["stride"] / t for (w, kind), t in times.items()
               if w == row["weights"]}
        row["scored_fps"] = round(fps.get("reuse", fps["whole"]), 1)
        row["whole_scored_fps"] = round(fps["whole"], 1)
    return rows


def peers_report(model: str | Path, device: str, batches: tuple[int, ...], seconds: float,
                 peak: float | None, flop: float | None) -> dict | None:
    """Each of the engine's backends (:class:`stream.detector.engine.Engine`, fp32, as the
    live detector runs them: MXNet oneDNN-fused, and onnxruntime bound in place to the
    engine's buffers) beside the peer: the same network as the project's own ONNX export
    (:mod:`models.export`) run by onnxruntime with its default session options and a plain
    ``session.run`` (what a user exporting the model would run). All three take turns at
    each batch size (``seconds`` / 2 each per batch).

    Returns:
        ``{"onnxruntime": {"version", "session_options", "fps": {batch: frames/s}},
        "backends": {backend: {"fps": {...}}}, "ratio": {backend: {batch: ours / peer}},
        "best_backend", "best_ratio" (its best batch against the peer's best),
        "utilization": {backend: ..., "peer": ...}}`` (each at its best batch); None on a
        GPU (the onnxruntime installed runs on the CPU only).
    """
    import onnxruntime as ort

    from models.export import INPUT, inference_onnx
    from stream.detector.backends.onnxruntime_backend import onnx_session

    if pick_context(device).device_type != "cpu":
        return None
    engines = {name: Engine(model, device, "fp32", max(batches), backend=name)
               for name in BACKENDS}
    data = np.random.default_rng(0).random(engines["mxnet"].batch.shape, np.float32)
    for engine in engines.values():
        engine.batch[:] = data
    trained, meta = load_weights(model)
    nets = get_family(meta.model).inference(trained, meta, mx.cpu())
    session = onnx_session(inference_onnx(nets[max(nets)], meta).SerializeToString())
    fps: dict[str, dict[int, float]] = {name: {} for name in (*engines, "peer")}
    for b in batches:
        x = {INPUT: data[:b]}
        runs = {name: (lambda e=e, b=b: e.run(b)) for name, e in engines.items()}
        runs["peer"] = lambda x=x: session.run(None, x)
        for name, t in best_times(runs, seconds / 2).items():
            fps[name][b] = b * meta.window / t
    best = {name: max(v.values()) for name, v in fps.items()}
    top = max(engines, key=best.get)
    return {"onnxruntime": {"version": ort.__version__, "session_options": "default",
                            "fps": {str(b): round(v, 1) for b, v in fps["peer"].items()}},
            "backends": {name: {"fps": {str(b): round(v, 1) for b, v in fps[name].items()}}
                         for name in engines},
            "ratio": {name: {str(b): round(fps[name][b] / fps["peer"][b], 3)
                             for b in batches} for name in engines},
            "best_backend": top,
            "best_ratio": round(best[top] / best["peer"], 3),
            "utilization": None if flop is None or peak is None else
            {name: round(v * flop / peak, 3) for name, v in best.items()}}
