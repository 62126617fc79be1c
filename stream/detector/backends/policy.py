"""The precision policy: which precision ``auto`` runs, and which layers a reduced
precision keeps in fp32.

``auto`` never goes by CPU flags alone (on a CPU with AMX, bf16 measured 0.75x fp32).
The flags only name the backend's *candidates* (:meth:`Backend.candidates
<stream.detector.backends.base.Backend.candidates>`). :func:`measure` builds each
candidate, times it against fp32 at the engine's batch, and :func:`pick_auto` takes it
only where it is at least :data:`AUTO_MIN_SPEEDUP` times as fast *and* its decisions on
normal calibration windows equal fp32's; everywhere else fp32 runs. The same rule for
every backend.

Which layers int8 keeps in fp32 is the model family's knowledge
(:attr:`models.family.ModelFamily.int8_fp32_layers`), read here (:func:`fp32_layers`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

from models.registry import get_family
from models.scoring import LOOKBACK, WINDOW, Scorer, window_sum
from models.weights import WeightsMeta
from stream.detector.backends.base import BatchedRunner

#: Timed runs of each network at start-up under ``auto`` (after one warm-up run); the
#: best counts, so another program's burst of CPU use lowers a figure less.
AUTO_RUNS = 3
#: How much faster than fp32 a reduced precision must measure for ``auto`` to take it:
#: two best-of-3 timings of the same network on a shared machine differ by a few
#: percent, and a change of numerics is not worth less than 10%.
AUTO_MIN_SPEEDUP = 1.1
#: Without a decision rule, ``auto`` accepts a reduced network whose reconstruction
#: differs from fp32's by at most this many grey levels (0-255) per pixel, averaged
#: over every 4x4 window. Every score is built from 4x4 sums of the residual |x̂ − x|
#: (or its mean), and by the triangle inequality each moves by at most the 4x4 sum of
#: |x̂_reduced − x̂_fp32|; one grey level is the resolution of the 8-bit frames that
#: the residual is measured against.
RECON_TOLERANCE = 1.0
#: Per-frame verdicts of a batch: ``decide(recon, windows)`` with recon and windows
#: (n, F, S, S), the reconstruction and the frames it reconstructs, returns a bool
#: array (n, F') of anomalous verdicts.
Decide = Callable[[np.ndarray, np.ndarray], np.ndarray]


def fp32_layers(meta: WeightsMeta) -> tuple[str, ...]:
    """The layers (name substrings) int8 keeps in fp32 for ``meta``'s model: its
    family's :attr:`~models.family.ModelFamily.int8_fp32_layers`."""
    return tuple(get_family(meta.model).int8_fp32_layers)


def pick_auto(fps: dict[str, float], changed: dict[str, int]) -> str:
    """What ``auto`` runs, from what it measured.

    Args:
        fps: Frames/s per precision, ``fp32`` included, all timed at the same batch.
        changed: Per reduced precision that was checked, how many of its decisions on
            normal calibration windows differ from fp32's.

    Returns:
        The fastest reduced precision that is at least :data:`AUTO_MIN_SPEEDUP` times
        as fast as fp32 and changed no decision; ``fp32`` if none is.
    """
    good = [p for p in fps if p != "fp32" and changed.get(p) == 0
            and fps[p] >= AUTO_MIN_SPEEDUP * fps["fp32"]]
    return max(good, key=fps.get) if good else "fp32"


def scorer_decisions(scorer: Scorer, lookback: int = LOOKBACK) -> Decide:
    """The verdicts a detector scoring with ``scorer`` reaches on reconstructed frames:
    every frame but the first ``lookback`` of each (those only give the error's change)."""
    def decide(recon: np.ndarray, windows: np.ndarray) -> np.ndarray:
        return np.stack([scorer.score(r, w, first=lookback).anomalous
                         for r, w in zip(recon, windows, strict=True)])
    return decide


def reconstruction_changed(recon: np.ndarray, reference: np.ndarray,
                           pixel_scale: float) -> np.ndarray:
    """Per frame, whether ``recon`` differs from ``reference`` (both (n, F, S, S), model
    units) by more than :data:`RECON_TOLERANCE` grey levels per pixel in some 4x4 window.

    Returns:
        bool (n, F).
    """
    sums = window_sum(np.abs(recon - reference) * pixel_scale)
    return sums.max(axis=(-2, -1)) > RECON_TOLERANCE * WINDOW ** 2


def check_name(decide: Decide | None) -> str:
    """What ``auto`` checks a faster candidate by (the report's ``check``)."""
    return "decisions" if decide is not None else \
        f"reconstructions within {RECON_TOLERANCE:g} grey level per 4x4 window"


def measure(build: Callable[[str], BatchedRunner], candidates: tuple[str, ...],
            build_errors: tuple[type[Exception], ...], windows: np.ndarray, batch: int,
            window: int, frames: int, decide: Decide | None, pixel_scale: float,
            report: dict) -> tuple[str, BatchedRunner]:
    """``auto`` on normal ``windows`` already in the engine's buffer: build fp32 and each
    candidate, time them, check the decisions of those faster, pick (:func:`pick_auto`).

    Args:
        build: Builds (and warms up) a runner at a precision.
        candidates: The backend's candidates on this CPU.
        build_errors: The backend's errors that mean a candidate cannot run here.
        windows: Normal calibration windows, (N, T, ...).
        batch: Windows per timed run.
        window: Frames per window.
        frames: Frames the network outputs per window (its newest).
        decide: The scorer's verdicts (None: :data:`RECON_TOLERANCE`).
        pixel_scale: Grey levels per model unit.
        report: Filled in: ``skipped``, ``frames_per_s``, ``checked_frames``,
            ``changed``, ``precision`` and ``reason``.

    Returns:
        The precision to run and its runner.
    """
    runners = {"fp32": build("fp32")}
    for p in candidates:
        try:
            runners[p] = build(p)
        # e.g. oneDNN's "could not create a primitive", or an assert in MXNet's AMP: the
        # candidate cannot run here, and fp32 always can
        except build_errors as err:
            report["skipped"][p] = (str(err).strip().splitlines() or [type(err).__name__])[0]
    if len(runners) == 1:
        report["reason"] = "no candidate could run on this CPU"
        return "fp32", runners["fp32"]
    fps = best_fps(runners, batch, window, AUTO_RUNS)
    report["frames_per_s"] = {p: round(v, 1) for p, v in fps.items()}
    target = windows[:, window - frames:]   # the frames the network reconstructs
    reference = verdicts = None
    for p in sorted(runners, key=fps.get, reverse=True):
        if p == "fp32" or fps[p] < AUTO_MIN_SPEEDUP * fps["fp32"]:
            continue
        if reference is None:
            reference = runners["fp32"].reconstruct(windows)
            verdicts = None if decide is None else decide(reference, target)
        recon = runners[p].reconstruct(windows)
        changed = reconstruction_changed(recon, reference, pixel_scale) \
            if decide is None else decide(recon, target) != verdicts
        report["checked_frames"] = int(changed.size)
        report["changed"][p] = int(changed.sum())
        if not changed.any():
            break   # the fastest that decides as fp32: slower ones need no check
    chosen = pick_auto(fps, report["changed"])
    report["precision"] = chosen
    report["reason"] = auto_reason(chosen, fps, report)
    return chosen, runners[chosen]


def best_fps(runners: dict[str, BatchedRunner], n: int, window: int, runs: int
             ) -> dict[str, float]:
    """Frames (``n`` windows of ``window`` frames) per second of each runner: the best of
    ``runs`` calls, the runners taking turns so that a change of load hits all alike."""
    best = dict.fromkeys(runners, math.inf)
    for _ in range(runs):
        for name, runner in runners.items():
            started = time.perf_counter()
            runner.run(n)
            best[name] = min(best[name], time.perf_counter() - started)
    return {name: n * window / seconds for name, seconds in best.items()}


def auto_reason(chosen: str, fps: dict[str, float], report: dict) -> str:
    """Why ``auto`` runs ``chosen``, in a few words."""
    if chosen != "fp32":
        return (f"{chosen} measured {fps[chosen] / fps['fp32']:.2f}x fp32 and changed none "
                f"of {report['checked_frames']} {report['check']} on normal windows")
    if report["changed"]:
        return ("no candidate at least " f"{AUTO_MIN_SPEEDUP:g}x fp32 kept fp32's "
                f"{report['check']}: changed " + ", ".join(
                    f"{p} {k} of {report['checked_frames']}"
                    for p, k in report["changed"].items()))
    return "no candidate measured at least " + f"{AUTO_MIN_SPEEDUP:g}x fp32 (" + ", ".join(
        f"{p} {v / fps['fp32']:.2f}x" for p, v in fps.items() if p != "fp32") + ")"
