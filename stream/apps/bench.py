"""``vadstream bench``: how fast this machine runs the detector, against what it could.

Measured in one run so that ratios hold even where absolute speeds drift: the machine's
fp32 matrix-multiply peak first, then the detector's network
(:class:`stream.detector.engine.Engine`,
as the live detector runs it) at several batch sizes, beside its peer (the same network's
ONNX export run by onnxruntime, in turns at each batch), the fastest reduced precision with
its AUC change on the Ped2 test clips, what ``precision: auto`` picks beside fp32 (timed
in turns at the live batch), the whole multi-process pipeline
(:mod:`stream.apps.bench_pipeline`), and how many cameras it holds
(:mod:`stream.apps.bench_capacity`). Every throughput is the best of three timed runs, so
another program's burst of CPU use lowers a figure less. Any model runs; the peak
utilization needs the STAE's FLOP count and is skipped, with why, for other families.
"""

from __future__ import annotations

import logging
import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import mxnet as mx
import numpy as np

from models.registry import get_family
from models.scoring import LOOKBACK, ScorerConfig
from models.weights import load_calibration_arrays, load_weights, read_meta
from stream.apps.demo import DEFAULT_SOURCE
from stream.defaults import BACKENDS
from stream.detector.engine import Engine, get_backend, pick_context
from stream.detector.precision import bf16_possible, cpu_flags, isa_summary, scorer_decisions

log = logging.getLogger(__name__)
CPU_BATCHES = (1, 2, 4, 8)
GPU_BATCHES = (1, 2, 4, 8, 16, 32, 64)
#: Frames/s of each camera in the live pipeline run.
LIVE_FPS = 10.0
#: Windows per forward pass of the live measurements: the detector's default batch.
LIVE_BATCH = 4


def device_name(ctx: mx.Context) -> str:
    """The CPU model or GPU name the benchmark ran on."""
    if ctx.device_type == "gpu":
        try:
            return subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                                  capture_output=True, text=True, timeout=10).stdout.strip()
        except OSError:
            return f"gpu({ctx.device_id})"
    return cpu_name() or platform.processor() or "cpu"


def cpu_name() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` ("" where it cannot be read)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def best_time(fn: Callable[[], object], seconds: float, runs: int = 3) -> float:
    """Seconds per call of ``fn``: the best of ``runs`` timed runs of ``seconds / runs``
    each (after one warm-up call)."""
    return best_times({"": fn}, seconds, runs)[""]


def best_times(fns: dict[str, Callable[[], object]], seconds: float, runs: int = 3
               ) -> dict[str, float]:
    """Seconds per call of each function, like :func:`best_time`, but the functions take
    turns (one timed run of ``seconds / runs`` each per round), so that a change of load
    on the machine hits all of them alike."""
    best = {}
    for name, fn in fns.items():
        fn()
        best[name] = float("inf")
    for _ in range(runs):
        for name, fn in fns.items():
            n, start = 0, time.perf_counter()
            while True:
                fn()
                n += 1
                elapsed = time.perf_counter() - start
                if elapsed >= seconds / runs and n >= 2:
                    break
            best[name] = min(best[name], elapsed / n)
    return best


def _onnx_matmul(n: int) -> Callable[[], object] | None:
    """An onnxruntime (MLAS) ``n × n`` fp32 matrix multiply, or None without onnxruntime."""
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError:
        return None
    spec = [helper.make_tensor_value_info(x, TensorProto.FLOAT, [n, n]) for x in "abc"]
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "peak",
                              spec[:2], spec[2:])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feed = {x: rng.random((n, n), np.float32) for x in "ab"}
    return lambda: session.run(None, feed)


def peak_report(ctx: mx.Context, sizes: tuple[int, ...] = (1024, 2048),
                seconds: float = 3.0) -> dict:
    """Practical fp32 peak: the fastest square matrix multiply (GFLOP/s) this machine's
    libraries run, at each size in ``sizes``. On a GPU: MXNet's ``dot``. On a CPU, also
    oneDNN's inner product (MXNet's ``FullyConnected``), NumPy's BLAS and onnxruntime's
    MLAS: the BLAS a library bundles may not use every instruction this CPU has (NumPy's
    and MXNet's ``dot`` reach half of oneDNN's on AVX-512 here), so the fastest is the
    honest ceiling for a utilization.

    Returns:
        ``{"gflops": best, "by": "library n", "all": {"library n": GFLOP/s}}``.
    """
    found = {}
    for n in sizes:
        a = mx.nd.random.uniform(shape=(n, n), ctx=ctx)
        b = mx.nd.random.uniform(shape=(n, n), ctx=ctx)
        fns = {"mxnet dot": lambda a=a, b=b: mx.nd.dot(a, b).wait_to_read()}
        if ctx.device_type == "cpu":
            x, y = a.asnumpy(), b.asnumpy()
            fns["onednn inner product"] = lambda a=a, b=b, n=n: mx.nd.FullyConnected(
                a, b, no_bias=True, num_hidden=n).wait_to_read()
            fns["numpy"] = lambda x=x, y=y: x @ y
            mlas = _onnx_matmul(n)
            if mlas is not None:
                fns["onnxruntime mlas"] = mlas
        for name, t in best_times(fns, seconds * len(fns) / len(sizes) / 4).items():
            found[f"{name} {n}"] = round(2 * n ** 3 / t / 1e9, 1)
    by = max(found, key=found.get)
    return {"gflops": found[by], "by": by, "all": found}


def conv_macs(out_hw: int, out_c: int, k: int, in_c: int) -> int:
    return out_hw * out_hw * out_c * k * k * in_c


def gflop_per_frame(window: int, spatial: tuple[int, int], temporal: tuple[int, int, int],
                    output_channels: int = 1) -> float:
    """FLOPs (2 per multiply-add) of one 227×227 frame through the STAE, counted from its
    layers; ``output_channels`` is 1 in the paper (2 in the training graph, see docs/decisions.md).
    This is the work the model needs, whatever extra the implementation does."""
    c1, c2 = spatial
    t1, t2, t3 = temporal
    macs = conv_macs(55, c1, 11, 1) + conv_macs(26, c2, 5, c1)
    for cin, hidden in ((c2, t1), (t1, t2), (t2, t3)):
        macs += conv_macs(26, 4 * hidden, 3, cin) + conv_macs(26, 4 * hidden, 3, hidden)
    # transposed convolutions: every input pixel scatters a k×k×out kernel
    macs += 26 * 26 * t3 * c1 * 5 * 5 + 55 * 55 * c1 * output_channels * 11 * 11
    return 2 * macs / 1e9


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


def _skip_errors() -> tuple[type[Exception], ...]:
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
    temporal part on the cached rest (:mod:`stream.detector.reuse`)."""
    meta = read_meta(model)
    decode = stride + get_family(meta.model).temporal(meta).lookback
    engine = Engine(model, device, precision, LIVE_BATCH, int8_calibration,
                    decode_last=decode if decode < meta.window else None, reuse=True,
                    backend=backend)
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
        calibration = _calibration_data(model, data)
        for name, p in REDUCED:
            if p == "bf16" and not bf16_possible():
                continue
            try:
                made = live_runs(model, device, stride, p, calibration, backend=name)
            except _skip_errors() as err:
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
    from stream.detector.onnx_backend import onnx_session

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


def detector_stride(model: str | Path) -> int:
    """The stride the weights were calibrated for (5 if none), at most the frames one
    window of their model scores (as the live detector caps it)."""
    meta = read_meta(model)
    return min(int(meta.calibration.get("stride", 5)),
               get_family(meta.model).temporal(meta).scorable)


def _calibration_data(model: str | Path, data: Path) -> str:
    """int8 calibration clips: the weights' own training clips if recorded, else the
    ``Train`` split of ``data`` (normal footage either way)."""
    return "" if read_meta(model).provenance.get("data") else str(data)


#: Reduced precisions the bench tries, as (backend, precision): each runs where this CPU
#: and that backend can (bf16: MXNet's oneDNN on AVX-512; int8: both backends).
REDUCED = (("mxnet", "bf16"), ("mxnet", "int8"), ("onnxruntime", "int8"))


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
    calibration = _calibration_data(model, data)
    candidates = [(b, p) for b, p in REDUCED if p != "bf16" or bf16_possible()]
    engines, skipped = {}, {}
    for backend, p in (*((b, "fp32") for b in BACKENDS), *candidates):
        try:
            engines[backend, p] = Engine(model, "cpu", p, max(batches), calibration,
                                         backend=backend)
        # oneDNN's "could not create a primitive", or a precision the backend refuses
        except _skip_errors() as err:
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
    calibration = _calibration_data(model, data)
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


def run_bench(model: str | Path, device: str = "auto", seconds: float = 3.0,
              data: Path = DEFAULT_SOURCE, streams: int = 4, sweep: tuple[int, ...] = (1, 2, 4, 8),
              pipeline: bool = True, reduced: bool = True, stride: int | None = None,
              families: list[str | Path] | None = None, peers: bool = True,
              capacity: dict | None = None) -> dict:
    """Everything ``vadstream bench`` reports, measured in one run.

    Args:
        model: Weights.
        device: ``auto``, ``cpu`` or ``gpu``.
        seconds: Time per throughput figure (and per pipeline measurement, times three).
        data: UCSD Ped2 root (its Test clips for the AUC, Train for int8 calibration).
        streams: Cameras in the live pipeline measurement (10 frames/s each).
        sweep: Stream counts of the flooded pipeline sweep.
        pipeline: Measure the multi-process pipeline.
        reduced: Measure the reduced precision (it evaluates the test clips twice) and
            what ``precision: auto`` picks.
        stride: Detector stride of the live measurements (default: the weights' own).
        families: Weights of other models whose live scored frames/s are timed beside
            ``model``'s (:func:`families_report`); None: none.
        peers: Time the same network run by onnxruntime beside the engine
            (:func:`peers_report`).
        capacity: Keyword arguments of
            :func:`stream.apps.bench_capacity.capacity_report` (``fps``, ``seconds``,
            ``budget_ms``, ``max_cameras``) for the capacity search; None: no search.

    Any model runs; what only some families allow is reported as skipped, with why, in
    ``skipped``: the FLOP count (peak and utilization) is the STAE's, and encoder reuse
    needs a family that splits into an encoder and a temporal part.
    """
    from stream.apps.bench_pipeline import pipeline_report

    ctx = pick_context(device)
    meta = read_meta(model)
    batches = GPU_BATCHES if ctx.device_type == "gpu" else CPU_BATCHES
    started = time.time()
    skipped: dict[str, str] = {}
    peak_entry = peak = flop = flop_training = None
    if meta.model == "stae":
        args = meta.model_args
        spatial = tuple(args.get("spatial_channels", (128, 64)))
        temporal = tuple(args.get("temporal_channels", (64, 32, 64)))
        peak_entry = peak_report(ctx, seconds=seconds)
        peak = peak_entry["gflops"]
        flop = gflop_per_frame(meta.window, spatial, temporal)
        flop_training = gflop_per_frame(meta.window, spatial, temporal, output_channels=2)
        log.info("peak %.1f GFLOP/s", peak)
    else:
        skipped["utilization"] = (f"the FLOP count is the STAE's layers' and {model} is a "
                                  f"{meta.model}: no GFLOP per frame, peak or utilization")
        log.info("utilization skipped: %s", skipped["utilization"])
    log.info("timing the model at batches %s", batches)
    fps = model_fps(model, device, "fp32", batches, seconds)
    best_batch = max(fps, key=fps.get)
    stride = stride or detector_stride(model)
    if not 1 <= stride <= meta.window:
        raise ValueError(f"stride must be 1..{meta.window} (the window), got {stride}")
    live_entry = live_fps(model, device, stride, seconds, data if reduced else None)
    if not any("reuse" in kinds for kinds in live_entry["by_backend"].values()):
        skipped["encoder_reuse"] = (
            f"windows of {meta.window} frame(s) at stride {stride} share no frame"
            if stride >= meta.window else
            f"a {meta.model} does not split into an encoder and a temporal part")
    # the pipeline runs the detector's default backend (MXNet), with reuse where it splits
    live = max(live_entry["by_backend"]["mxnet"].values())
    result = {
        "model": str(model), "family": meta.model, "window": meta.window, "stride": stride,
        "device": device_name(ctx), "context": str(ctx), "backend": "mxnet",
        "isa": isa_summary(cpu_flags()) if ctx.device_type == "cpu" else None,
        "load_average": [round(x, 2) for x in _load_average()],
        "peak_gflops": None if peak is None else round(peak, 1), "peak": peak_entry,
        "gflop_per_frame": None if flop is None else round(flop, 3),
        "gflop_per_frame_training_graph": None if flop_training is None
        else round(flop_training, 3),
        "model_fps": {str(b): round(v, 1) for b, v in fps.items()},
        "best_batch": best_batch,
        "utilization": None if flop is None else round(fps[best_batch] * flop / peak, 3),
        # what the live detector's network scores per second at its stride and batch 4
        "live_scored_fps": live_entry,
        "reduced_precision": None, "auto": None, "pipeline": None, "peers": None,
        "capacity": None, "skipped": skipped}
    if peers:
        log.info("peers: the same network exported to ONNX, run by onnxruntime in turns "
                 "with the engine at batches %s", batches)
        result["peers"] = peers_report(model, device, batches, seconds, peak, flop)
    if families:
        log.info("families: live scored frames/s of %s", [str(m) for m in families])
        result["families"] = families_report([model, *families], device, seconds)
    if reduced:
        log.info("reduced precision: timing it and evaluating the Ped2 test clips")
        result["reduced_precision"] = reduced_precision(model, ctx, data, batches, seconds)
        log.info("precision auto: what it picks for the live detector, timed beside fp32")
        result["auto"] = auto_report(model, device, data, stride, seconds)
    if pipeline:
        log.info("pipeline: %d streams at 10 frames/s, then flooded with %s streams",
                 streams, list(sweep))
        result["pipeline"] = pipeline_report(model, device, data, streams, sweep, seconds,
                                             fps, meta.window, live, stride,
                                             live_fps=LIVE_FPS)
    if capacity is not None:
        from stream.apps.bench_capacity import capacity_report

        searched = capacity_report(model, device, data, stride, LIVE_BATCH,
                                   int8_calibration=_calibration_data(model, data),
                                   **capacity)
        top = searched[0]
        result["capacity"] = ({k: v for k, v in top.items() if k != "tried"}
                              | {"tried": top.get("tried", []), "searched": searched})
    else:
        skipped["capacity"] = "--skip-capacity"
    result["load_average_end"] = [round(x, 2) for x in _load_average()]
    result["seconds"] = round(time.time() - started, 1)
    return result


def _load_average() -> tuple[float, float, float]:
    try:
        import os

        return os.getloadavg()
    except OSError:
        return (0.0, 0.0, 0.0)


def format_bench(result: dict) -> str:
    """The terminal table."""
    flop = result["gflop_per_frame"]
    lines = [f"model           {result.get('model', '?')} ({result.get('family', 'stae')})",
             f"device          {result['device']} ({result['context']}"
             f"{', ' + result['isa'] if result.get('isa') else ''})",
             f"load average    {result['load_average'][0]:.2f} at start, "
             f"{result['load_average_end'][0]:.2f} at end (other programs share this machine)"]
    if flop is not None:
        lines += [f"peak fp32       {result['peak_gflops']:.1f} GFLOP/s (matrix multiply: "
                  f"{result['peak']['by']}, the fastest of "
                  + ", ".join(f"{k} {v:.0f}" for k, v in result["peak"]["all"].items()) + ")",
                  f"model cost      {flop:.3f} GFLOP/frame (training graph: "
                  f"{result['gflop_per_frame_training_graph']:.3f})"]
    for b, v in result["model_fps"].items():
        lines.append(f"batch {b:>2}        {v:7.1f} frames/s"
                     + ("" if flop is None else f" = {v * flop:.1f} GFLOP/s"))
    if result["utilization"] is not None:
        lines.append(f"utilization     {result['utilization']:.3f} of the fp32 peak "
                     f"(batch {result['best_batch']}, backend {result.get('backend', 'mxnet')})")
    peers = result.get("peers")
    if peers:
        ort = peers["onnxruntime"]
        lines.append(f"peer            onnxruntime {ort['version']} ({ort['session_options']} "
                     "session options, plain run) on this network's ONNX export, timed in "
                     "turns with our backends:")
        for b, peer in ort["fps"].items():
            lines.append(f"  batch {b:>2}      peer {peer:7.1f}; " + ", ".join(
                f"{name} {v['fps'][b]:.1f} ({peers['ratio'][name][b]:.2f}x)"
                for name, v in peers["backends"].items()) + " frames/s")
        util = peers["utilization"]
        lines.append(f"  best          {peers['best_backend']}: {peers['best_ratio']:.2f}x "
                     "onnxruntime" + ("" if util is None else "; utilization " + ", ".join(
                         f"{name} {v:.3f}" for name, v in util.items()) + " of the fp32 peak"))
    live = result["live_scored_fps"]
    lines.append(f"live network    {live['fps']:7.1f} frames/s scored at stride {live['stride']}, "
                 f"batch {live['batch']}, by {live['best']} ({live['speedup']:.2f}x MXNet's "
                 f"whole network, {live['whole_fps']:.1f}; decoding only the newest "
                 f"{live['stride']} of each window and the one before them)")
    for name, kinds in live["by_backend"].items():
        lines.append(f"  {name:<13} " + ", ".join(
            f"{kind} {v:.1f}" for kind, v in kinds.items()) + " frames/s scored"
            + (" (reuse: each frame encoded once)" if "reuse" in kinds else ""))
    if live.get("reduced"):
        lines.append(f"  reduced       {live['reduced_best']}: {live['reduced_fps']:.1f} frames/s "
                     f"scored, {live['reduced_speedup']:.2f}x MXNet's whole fp32 network (of "
                     + ", ".join(f"{k} {v:.1f}" for k, v in live["reduced"].items()) + ")")
    for row in result.get("families") or []:
        reuse = (f", encoder reuse: {row['scored_fps'] / row['whole_scored_fps']:.2f}x the "
                 f"whole network's {row['whole_scored_fps']:.1f}"
                 if row.get("encoder_reuse") else "")
        lines.append(f"{row['model']:<15} {row['scored_fps']:7.1f} frames/s scored live "
                     f"(window {row['window']}, stride {row['stride']}, {row['size']}x"
                     f"{row['size']}, {row['parameters'] / 1e6:.2f} M parameters{reuse}) "
                     f"{row['weights']}")
    rp = result.get("reduced_precision")
    if rp:
        lines.append(f"{rp['dtype']:<15} {rp['fps']:7.1f} frames/s ({rp['backend']}), "
                     f"{rp['speedup']:.2f}x the best fp32 ({rp['fp32_backend']}, "
                     f"{rp['fp32_fps']:.1f}); AUC {rp['auc_delta']:+.4f} (online "
                     f"{rp['auc_delta_online']:+.4f}) against fp32 on {rp['backend']}, "
                     f"{rp['decisions_changed']}/{rp['frames']} decisions changed")
        lines.append("  timed in turns: " + ", ".join(
            f"{k} {v:.1f}" for k, v in rp["fps_by_dtype"].items()) + " frames/s" + "".join(
            f"; {k} skipped: {why}" for k, why in rp.get("skipped", {}).items()))
    auto = result.get("auto")
    if auto:
        measured = auto["startup"].get("frames_per_s") or {}
        lines.append(f"auto            {auto['precision']}: {auto['frames_per_s']:7.1f} frames/s "
                     f"scored against fp32's {auto['fp32_frames_per_s']:.1f} "
                     f"({auto['speedup']:.2f}x) at batch {auto['batch']}, stride "
                     f"{auto['stride']}; at start-up " + (", ".join(
                         f"{p} {v:.1f}" for p, v in measured.items()) + " frames/s: "
                         if measured else "") + auto["startup"].get("reason", ""))
    pipe = result.get("pipeline")
    if pipe:
        lat = pipe["latency_ms"]
        lines.append(f"pipeline        {pipe['streams']} streams x {pipe['source_fps']:g} fps: "
                     f"{pipe['fps']:.1f} of {pipe['offered_fps']:g} frames/s scored, "
                     f"{pipe['dropped']} dropped, latency "
                     f"p50/p95/p99 {lat['p50']:.0f}/{lat['p95']:.0f}/{lat['p99']:.0f} ms "
                     f"(budget {pipe['latency_budget_ms']:.0f}), detector RSS "
                     f"{pipe['rss_mb']:.0f} MB")
        flood = pipe["flood"]
        inside = flood["inference"]
        inside = "" if inside["fps"] is None else (
            f" (the model ran at {inside['fps']:.1f} frames/s in it, {inside['share']:.0%} of "
            "the time)")
        lines.append(f"flooded         {flood['streams']} streams: {flood['fps']:.1f} frames/s "
                     f"= {flood['ratio']:.2f} of the model alone at batch "
                     f"{flood['max_batch']}{inside}")
        for row in pipe["sweep"]:
            lines.append(f"  {row['streams']} stream(s)    {row['fps']:7.1f} frames/s, "
                         f"RSS {row['rss_mb']:.0f} MB")
        slope = pipe["rss_mb_per_stream"]
        slope = "-" if slope is None else f"{slope:.1f}"
        lines.append(f"RSS per stream  {slope} MB; about "
                     f"{pipe['cameras_10fps']} cameras at 10 fps (stride {live['stride']}) fit "
                     "this machine (estimated from the flooded runs)")
    cap = result.get("capacity")
    if cap:
        for e in cap["searched"]:
            name = f"{e['backend']} {e['precision']}{' (auto)' if e.get('auto') else ''}"
            if "skipped" in e:
                lines.append(f"capacity        {name}: skipped, {e['skipped']}")
                continue
            held = (f"p99 {e['p99_ms']:.0f} ms, {e['scored_share']:.0%} scored, "
                    f"{e['rss_mb_per_camera']:.0f} MB RSS per camera (detector "
                    f"{e['rss_mb']:.0f} MB, captures {e['captures_rss_mb']:.0f} MB)"
                    if e["cameras"] else "not even one camera held")
            lines.append(f"capacity        {name}: {e['cameras']} camera(s) at {e['fps']:g} fps "
                         f"held {e['seconds']:g} s with 0 dropped and p99 within "
                         f"{e['latency_budget_ms']:g} ms; {held}")
            lines.append("  tried         " + ", ".join(
                f"{t['cameras']}{'' if t['held'] else ' failed'}" + (
                    f" ({t['dropped']} dropped, p99 {t['p99_ms']:.0f} ms)"
                    if t.get("p99_ms") is not None else f" ({t.get('error', '')})")
                for t in e["tried"]))
    for part, why in (result.get("skipped") or {}).items():
        lines.append(f"skipped         {part}: {why}")
    return "\n".join(lines)
