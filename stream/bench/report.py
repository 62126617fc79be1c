"""``vadstream bench``'s report: every section measured in one run (:func:`run_bench`) and
its terminal table (:func:`format_bench`)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from models.weights import read_meta
from stream.bench.gated import gated_share
from stream.bench.network import (
    CPU_BATCHES,
    GPU_BATCHES,
    LIVE_BATCH,
    LIVE_FPS,
    calibration_data,
    detector_stride,
    families_report,
    live_fps,
    model_fps,
    peers_report,
)
from stream.bench.peak import gflop_per_frame, peak_report
from stream.bench.reduced import auto_report, reduced_precision
from stream.bench.timing import device_name, load_average
from stream.defaults import PED2
from stream.detector.engine import pick_context
from stream.detector.precision import cpu_flags, isa_summary

log = logging.getLogger(__name__)


def run_bench(model: str | Path, device: str = "auto", seconds: float = 3.0,
              data: Path = PED2, streams: int = 4, sweep: tuple[int, ...] = (1, 2, 4, 8),
              pipeline: bool = True, reduced: bool = True, stride: int | None = None,
              families: list[str | Path] | None = None, peers: bool = True,
              capacity: dict | None = None, gate: str | float = "on") -> dict:
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
            :func:`stream.bench.capacity.capacity_report` (``fps``, ``seconds``,
            ``budget_ms``, ``max_cameras``, ``candidates``, ``fit``) for the capacity
            search; None: no search.
        gate: The motion gate for ``gated_share`` (:func:`stream.bench.gated.gated_share`):
            ``on`` (the weights' calibrated gate) or a bound; ``off``: not measured.

    Any model runs; what only some families allow is reported as skipped, with why, in
    ``skipped``: the FLOP count (peak and utilization) is the STAE's, and encoder reuse
    needs a family that splits into an encoder and a temporal part; the gated share needs
    weights with a calibrated gate (or a bound given).
    """
    from stream.bench.pipeline import pipeline_report

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
        "load_average": [round(x, 2) for x in load_average()],
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
        "capacity": None, "gated_share": None, "skipped": skipped}
    if gate != "off":
        try:
            result["gated_share"] = gated_share(model, data, stride, gate)
        except ValueError as err:
            skipped["gated_share"] = str(err)
            log.info("gated share skipped: %s", err)
    else:
        skipped["gated_share"] = "--gate off"
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
        from stream.bench.capacity import capacity_report

        searched = capacity_report(model, device, data, stride, LIVE_BATCH,
                                   int8_calibration=calibration_data(model, data),
                                   **capacity)
        top = searched[0]
        result["capacity"] = ({k: v for k, v in top.items() if k != "tried"}
                              | {"tried": top.get("tried", []), "searched": searched})
    else:
        skipped["capacity"] = "--skip-capacity"
    result["load_average_end"] = [round(x, 2) for x in load_average()]
    result["seconds"] = round(time.time() - started, 1)
    return result


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
            name = (f"{e['backend']} {e['precision']}{' (auto)' if e.get('auto') else ''}"
                    f"{', fitted captures' if e.get('fit') else ''}")
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
    gated = result.get("gated_share")
    if gated:
        lines.append(f"gated share     {gated['share']:.1%} of {gated['windows']} windows on "
                     f"{gated['clips']} test clips skip the network (motion gate "
                     f"{gated['setting']}, bound {gated['bound']:g})")
    for part, why in (result.get("skipped") or {}).items():
        lines.append(f"skipped         {part}: {why}")
    return "\n".join(lines)
