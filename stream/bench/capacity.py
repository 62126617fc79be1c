"""How many cameras this machine watches, for ``vadstream bench``: the capacity search.

Each trial is a run of the real multi-process pipeline
(:func:`stream.bench.pipeline.run_pipeline`: ``vadstream capture`` processes
replaying the Ped2 test clips into a ``vadstream detect``, its score and overlay topics
subscribed) with N cameras at a given frame rate, held for a while. A trial holds when no
frame was dropped and the p99 latency from a frame's capture to its score stays within
the budget. The counts tried double from one camera until a trial fails (or the bound is
reached), then bisect between the last that held and the first that failed; the capacity
is the largest count that held. One search runs per backend and precision that
``precision: auto`` would consider on this machine.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from stream.defaults import BACKENDS, PRECISIONS

log = logging.getLogger(__name__)
#: Frames/s of each camera in the capacity trials (``--capacity-fps``).
CAPACITY_FPS = 10.0
#: Seconds each trial is held (``--capacity-seconds``).
CAPACITY_SECONDS = 30.0
#: The p99 frame-to-score latency a trial must hold, in ms (``--capacity-latency-ms``).
LATENCY_BUDGET_MS = 1000.0
#: The most cameras tried (``--capacity-max``).
CAPACITY_MAX = 64


def holds(trial: dict, budget_ms: float) -> bool:
    """Whether a trial held: it ran, dropped nothing, and its p99 latency is within
    ``budget_ms``."""
    return (trial.get("error") is None and trial["dropped"] == 0
            and trial["p99_ms"] <= budget_ms)


def search_capacity(trial: Callable[[int], dict], budget_ms: float, max_cameras: int
                    ) -> tuple[int, list[dict]]:
    """The most cameras that hold, by doubling from one, then bisecting.

    Args:
        trial: Runs the pipeline with N cameras; returns at least ``dropped`` and
            ``p99_ms`` (or ``error``).
        budget_ms: The p99 latency a trial must hold.
        max_cameras: The most cameras tried.

    Returns:
        The largest count that held (0 if one camera did not), and every trial in the
        order run, each with ``cameras`` and ``held``. Every count tried above the
        capacity failed: bisection only tries counts between the best that held and the
        least that failed.

    Raises:
        ValueError: If ``max_cameras`` is below 1.
    """
    if max_cameras < 1:
        raise ValueError(f"the capacity bound must be at least 1 camera, got {max_cameras}")
    tried: list[dict] = []

    def run(n: int) -> bool:
        result = {"cameras": n} | trial(n)
        result["held"] = holds(result, budget_ms)
        tried.append(result)
        log.info("capacity: %d camera(s): %s (%s dropped, p99 %s ms, %s scored%s)", n,
                 "held" if result["held"] else "failed", result.get("dropped"),
                 result.get("p99_ms"), result.get("scored_share"),
                 f"; {result['error']}" if result.get("error") else "")
        return result["held"]

    best, failed, n = 0, None, 1
    while failed is None:
        if run(n):
            best = n
            if n == max_cameras:
                break
            n = min(2 * n, max_cameras)
        else:
            failed = n
    while failed is not None and failed - best > 1:
        mid = (best + failed) // 2
        if run(mid):
            best = mid
        else:
            failed = mid
    return best, tried


def capacity_candidates(device_type: str, flags: frozenset[str] | None = None
                        ) -> list[tuple[str, str]]:
    """The (backend, precision) pairs searched: ``auto`` on the detector's default backend
    first (the precision it picks is read from the detector's status), then fp32 on each
    backend and each reduced precision ``auto`` would time on this CPU, on each backend
    that runs it (bf16: MXNet only). A GPU runs MXNet fp32 only."""
    from stream.detector.precision import auto_candidates

    if device_type != "cpu":
        return [("mxnet", "fp32")]
    reduced = auto_candidates(flags)
    pairs = [("mxnet", "auto")]
    for backend in BACKENDS:
        pairs += [(backend, p) for p in ("fp32", *reduced)
                  if not (backend == "onnxruntime" and p == "bf16")]
    return pairs


def parse_candidates(text: str) -> list[tuple[str, str]]:
    """``--capacity-only``'s ``BACKEND:PRECISION,...`` as (backend, precision) pairs.

    Raises:
        ValueError: If a pair is malformed or names an unknown backend or precision.
    """
    pairs = []
    for item in (x.strip() for x in text.split(",") if x.strip()):
        backend, _, precision = item.partition(":")
        if backend not in BACKENDS or precision not in PRECISIONS:
            raise ValueError(f"--capacity-only: {item!r} is not BACKEND:PRECISION with a "
                             f"backend of {list(BACKENDS)} and a precision of "
                             f"{list(PRECISIONS)}, e.g. mxnet:auto,mxnet:fp32")
        pairs.append((backend, precision))
    if not pairs:
        raise ValueError("--capacity-only names no BACKEND:PRECISION; e.g. mxnet:auto")
    return pairs


def capacity_report(model: str | Path, device: str, data: Path, stride: int, max_batch: int,
                    fps: float = CAPACITY_FPS, seconds: float = CAPACITY_SECONDS,
                    budget_ms: float = LATENCY_BUDGET_MS, max_cameras: int = CAPACITY_MAX,
                    int8_calibration: str = "",
                    candidates: list[tuple[str, str]] | None = None,
                    fit: bool = False) -> list[dict]:
    """The capacity search (:func:`search_capacity`) for each (backend, precision) of
    :func:`capacity_candidates` (or ``candidates``), each on the real pipeline.

    An explicit precision equal to what ``auto`` picked on the same backend is not searched
    twice. A pair whose detector cannot start here is left out with why (``skipped``).

    Args:
        model: Weights.
        device: Detector device.
        data: Ped2 root; its Test clips are replayed, looped.
        stride: Detector stride.
        max_batch: Detector batch.
        fps: Frames/s of each camera.
        seconds: How long each trial is held (after a warm-up).
        budget_ms: The p99 frame-to-score latency a trial must hold.
        max_cameras: The most cameras tried.
        int8_calibration: int8's calibration clips ("": the weights' own).
        candidates: (backend, precision) pairs instead of this machine's.
        fit: The captures fit their frames to the model (``vadstream capture --fit``).

    Returns:
        One entry per pair, the one with the most cameras first (ties: the order
        searched): ``cameras``, ``fps``, ``p99_ms``, ``p50_ms``, ``scored_fps`` (frames
        scored per second over all cameras) and ``rss_mb_per_camera`` (the
        detector's and the captures' resident sets at that count over the cameras) of the
        largest count that held (``None`` where none did), ``rss_mb`` (the detector's),
        ``captures_rss_mb``, ``scored_share``, ``backend``, ``precision`` (as run),
        ``auto`` (whether ``precision: auto`` chose it), ``latency_budget_ms``,
        ``seconds`` and ``tried``: each trial's ``cameras``, ``dropped``, ``p99_ms``,
        ``scored_share``, ``scored_fps``, ``held`` (and ``error`` where it did not run through).
    """
    from stream.bench.pipeline import run_pipeline
    from stream.detector.engine import pick_context

    if fps <= 0 or seconds <= 0 or budget_ms <= 0:
        raise ValueError(f"capacity fps, seconds and latency budget must be positive, got "
                         f"{fps:g}, {seconds:g} and {budget_ms:g}")
    pairs = candidates or capacity_candidates(pick_context(device).device_type)
    source = Path(data) / "Test"
    warmup = max(1.0, min(3.0, seconds))
    entries: list[dict] = []
    for backend, precision in pairs:
        if any(e["backend"] == backend and e["precision"] == precision and e["auto"]
               for e in entries):
            log.info("capacity: %s %s is what auto picked: searched already", backend,
                     precision)
            continue
        resolved: dict[str, str] = {}

        def trial(n: int, backend=backend, precision=precision, resolved=resolved) -> dict:
            try:
                run = run_pipeline(model, device, source, n, fps, seconds, stride, max_batch,
                                   precision=precision, warmup_s=warmup, backend=backend,
                                   int8_calibration=int8_calibration, fit=fit)
            except RuntimeError as err:
                if n == 1:
                    raise
                # overloaded past scoring every stream in time: a failed trial
                return {"dropped": None, "p99_ms": None, "scored_share": 0.0,
                        "error": str(err).splitlines()[0][:300]}
            resolved["precision"] = run["precision"]
            return {"dropped": run["dropped"], "p99_ms": run["latency_ms"]["p99"],
                    "p50_ms": run["latency_ms"]["p50"],
                    "scored_share": round(run["fps"] / (n * fps), 3),
                    "scored_fps": round(run["fps"], 2),
                    "rss_mb": run["rss_mb"], "captures_rss_mb": run["captures_rss_mb"]}

        log.info("capacity: %s %s, %g frames/s per camera, p99 within %g ms, %g s per "
                 "trial, at most %d cameras", backend, precision, fps, budget_ms, seconds,
                 max_cameras)
        try:
            cameras, tried = search_capacity(trial, budget_ms, max_cameras)
        except RuntimeError as err:
            if precision == "auto" or (backend, precision) == ("mxnet", "fp32"):
                raise
            why = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
            log.warning("capacity: %s %s cannot run here, skipped: %s", backend, precision,
                        why)
            entries.append({"backend": backend, "precision": precision, "auto": False,
                            "skipped": why})
            continue
        best = next((t for t in tried if t["cameras"] == cameras and t["held"]), None)
        entry = {"cameras": cameras, "fps": fps,
                 "p99_ms": best["p99_ms"] if best else None,
                 "p50_ms": best["p50_ms"] if best else None,
                 "scored_fps": best["scored_fps"] if best else None,
                 "rss_mb_per_camera": round((best["rss_mb"] + best["captures_rss_mb"])
                                            / cameras, 1) if best else None,
                 "rss_mb": best["rss_mb"] if best else None,
                 "captures_rss_mb": best["captures_rss_mb"] if best else None,
                 "scored_share": best["scored_share"] if best else None,
                 "backend": backend, "precision": resolved.get("precision", precision),
                 "auto": precision == "auto", "latency_budget_ms": budget_ms, "fit": fit,
                 "seconds": seconds, "max_cameras": max_cameras,
                 "tried": [{k: t.get(k) for k in ("cameras", "dropped", "p99_ms", "p50_ms",
                                                  "scored_share", "scored_fps", "held",
                                                  "error")
                            if k != "error" or t.get("error")} for t in tried]}
        entries.append(entry)
    searched = [e for e in entries if "skipped" not in e]
    skipped = [e for e in entries if "skipped" in e]
    return sorted(searched, key=lambda e: -e["cameras"]) + skipped
