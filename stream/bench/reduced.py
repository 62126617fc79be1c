"""Reduced precision, for the bench: the fastest of either backend with its AUC change on
the Ped2 test clips, and what ``precision: auto`` picks for a live detector."""

from __future__ import annotations

import logging
from pathlib import Path

import mxnet as mx
import numpy as np

from models.registry import get_family
from models.scoring import ScorerConfig
from models.weights import load_calibration_arrays, read_meta
from stream.bench.network import (
    LIVE_BATCH,
    REDUCED,
    calibration_data,
    detector_stride,
    skip_errors,
)
from stream.bench.timing import best_times
from stream.defaults import BACKENDS
from stream.detector.engine import Engine
from stream.detector.precision import bf16_possible, scorer_decisions

log = logging.getLogger(__name__)


def reduced_precision(model: str | Path, ctx: mx.Context, data: Path,
                      batches: tuple[int, ...], seconds: float) -> dict | None:
    """The fastest reduced precision of either backend on this CPU, timed in turns with
    both backends' fp32 at each batch size, its speed-up over the best fp32 (either
    backend's), and its AUC change on the Ped2 test clips in ``data`` against fp32 on the
    same backend. None on a GPU.

    Returns:
        ``dtype``, ``backend``, ``fps`` (its best batch), ``speedup`` (over the best fp32
        of either backend, named by ``fp32_backend`` with ``fp32_fps``), ``auc_delta``,
        ``auc_delta_online``, ``auc_fp32``, ``decisions_changed`` of ``frames``,
        ``fps_by_dtype`` (``"backend dtype"``: best frames/s of each that ran),
        ``skipped`` (each that could not run, with why) and ``model_fps`` (the chosen
        one's, per batch).
    """
    from train.evaluate import evaluate

    if ctx.device_type != "cpu":
        return None
    calibration = calibration_data(model, data)
    candidates = [(b, p) for b, p in REDUCED if p != "bf16" or bf16_possible()]
    engines, skipped = {}, {}
    for backend, p in (*((b, "fp32") for b in BACKENDS), *candidates):
        try:
            engines[backend, p] = Engine(model, "cpu", p, max(batches), calibration,
                                         backend=backend)
        # oneDNN's "could not create a primitive", or a precision the backend refuses
        except skip_errors() as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            skipped[f"{backend} {p}"] = first
            log.warning("reduced precision: %s %s cannot run here, skipped: %s", backend, p,
                        first)
    if not any(p != "fp32" for _, p in engines):
        return None
    data_in = np.random.default_rng(0).random(next(iter(engines.values())).batch.shape,
                                              np.float32)
    for engine in engines.values():
        engine.batch[:] = data_in
    per_batch: dict[tuple[str, str], dict[int, float]] = {k: {} for k in engines}
    for b in batches:
        runs = {k: (lambda e=e, b=b: e.run(b)) for k, e in engines.items()}
        for k, t in best_times(runs, seconds / 2).items():
            per_batch[k][b] = b * engines[k].window / t
    fps = {k: max(v.values()) for k, v in per_batch.items()}
    fp32 = max((k for k in fps if k[1] == "fp32"), key=fps.get)
    backend, dtype = max((k for k in fps if k[1] != "fp32"), key=fps.get)
    aucs, decisions = {}, {}
    for p in ("fp32", dtype):
        result, clips = evaluate(model, data, stride=detector_stride(model), ctx=ctx,
                                 precision=p, int8_calibration=calibration, backend=backend)
        aucs[p] = result
        decisions[p] = np.concatenate([c.decisions for c in clips])

    def delta(key: str) -> float | None:
        a, b = aucs[dtype][key], aucs["fp32"][key]
        return None if a is None or b is None else round(a - b, 4)

    return {"dtype": dtype, "backend": backend, "fps": round(fps[backend, dtype], 1),
            "speedup": round(fps[backend, dtype] / fps[fp32], 3),
            "fp32_backend": fp32[0], "fp32_fps": round(fps[fp32], 1),
            "auc_delta": delta("frame_auc_paper"),
            "auc_delta_online": delta("frame_auc_online"),
            "auc_fp32": aucs["fp32"]["frame_auc_paper"],
            "decisions_changed": int((decisions["fp32"] != decisions[dtype]).sum()),
            "frames": int(len(decisions["fp32"])),
            "fps_by_dtype": {" ".join(k): round(v, 1) for k, v in fps.items()},
            "skipped": skipped,
            "model_fps": {str(b): round(v, 1) for b, v in per_batch[backend, dtype].items()}}


def auto_report(model: str | Path, device: str, data: Path, stride: int,
                seconds: float) -> dict:
    """What ``precision: auto`` picks for a live detector with the shipped config (batch
    :data:`LIVE_BATCH`, the tail network at ``stride``, the weights' calibrated rule deciding)
    and its frames scored per second beside fp32's, the two timed in turns.

    Returns:
        ``precision``, ``batch``, ``stride``, ``frames_per_s``, ``fp32_frames_per_s``,
        ``speedup`` and ``startup`` (the engine's own measurement,
        :attr:`stream.detector.engine.Engine.precision_report`).
    """
    meta = read_meta(model)
    family = get_family(meta.model)
    scorer = family.scorer(meta, load_calibration_arrays(model, meta), ScorerConfig())
    lookback = family.temporal(meta).lookback
    decode = stride + lookback
    calibration = calibration_data(model, data)
    engines = {p: Engine(model, device, p, LIVE_BATCH, calibration,
                         decode_last=decode if decode < meta.window else None,
                         decide=scorer_decisions(scorer, lookback))
               for p in ("auto", "fp32")}
    chosen = engines["auto"].precision
    for engine in engines.values():
        engine.batch[:] = np.random.default_rng(0).random(engine.batch.shape, np.float32)
    timed = engines if chosen != "fp32" else {"fp32": engines["fp32"]}
    tail = engines["fp32"].decode_last != engines["fp32"].outputs
    best = best_times({p: (lambda e=e: e.run(LIVE_BATCH, tail=tail)) for p, e in timed.items()},
                      seconds)
    fps = {p: LIVE_BATCH * stride / t for p, t in best.items()}
    fps.setdefault("auto", fps["fp32"])   # auto runs the very fp32 network: one figure
    return {"precision": chosen, "batch": LIVE_BATCH, "stride": stride,
            "frames_per_s": round(fps["auto"], 1),
            "fp32_frames_per_s": round(fps["fp32"], 1),
            "speedup": round(fps["auto"] / fps["fp32"], 3),
            "startup": engines["auto"].precision_report}
