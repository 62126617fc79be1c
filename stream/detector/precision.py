"""What this machine offers for the model's numeric precision: its CPU's flags, the
precisions a device can run (:func:`resolve_precision`), the reduced ones worth measuring
(:func:`auto_candidates`), and the normal windows int8 is calibrated and checked on
(:func:`calibration_windows`).

``fp32`` is the reference. The reduced paths of the MXNet backend are MXNet 1.9.1's oneDNN
ones: ``bf16`` and ``int8`` (:mod:`stream.detector.backends.mxnet_backend`); the
onnxruntime backend has ``int8`` only (:mod:`stream.detector.onnx_int8`). Which one
``auto`` runs is the precision policy's (:mod:`stream.detector.backends.policy`): the
flags only name the *candidates*: int8 where the CPU has VNNI or AMX-int8, bf16 where it
has AVX512-BF16 or AMX-bf16.
"""

from __future__ import annotations

import math
from pathlib import Path

import mxnet as mx
import numpy as np

from models.weights import WeightsMeta
from stream.capture.frames import list_frames, load_clip, resolve_clips
from stream.defaults import PRECISIONS

# The precision policy's names, still importable from here:
from stream.detector.backends.policy import (  # noqa: F401
    AUTO_MIN_SPEEDUP,
    AUTO_RUNS,
    RECON_TOLERANCE,
    Decide,
    pick_auto,
    reconstruction_changed,
    scorer_decisions,
)

_BF16 = frozenset({"avx512_bf16", "amx_bf16"})
#: Flags of a CPU with int8 dot-product instructions (what int8 pays on).
VNNI = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
_AVX512_CORE = frozenset({"avx512f", "avx512bw", "avx512vl", "avx512dq"})
_REPO = Path(__file__).resolve().parents[2]


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (empty where it cannot be read)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def isa_summary(flags: frozenset[str]) -> str:
    """The vector extensions that matter here, e.g. ``avx2 fma`` or ``avx512f avx512_bf16``."""
    keep = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16",
            "amx_int8")
    return " ".join(f for f in keep if f in flags) or "no AVX2"


def bf16_possible(flags: frozenset[str] | None = None) -> bool:
    """Whether oneDNN 2.4 can run bf16 convolutions on this CPU at all (AVX-512 core)."""
    return _AVX512_CORE <= (cpu_flags() if flags is None else flags)


def resolve_precision(precision: str, ctx: mx.Context,
                      flags: frozenset[str] | None = None) -> str:
    """The precision to run: ``precision`` itself once checked, ``fp32`` for ``auto``
    where there is nothing to measure (a GPU, or a CPU with no candidate), else ``auto``
    (the engine measures the candidates, :func:`auto_candidates`).

    Args:
        precision: One of :data:`PRECISIONS`.
        ctx: Where the model runs.
        flags: CPU flags (default: this CPU's).

    Raises:
        ValueError: For an unknown precision, or one this device cannot run.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {list(PRECISIONS)}")
    if ctx.device_type != "cpu":
        if precision in ("bf16", "int8"):
            raise ValueError(f"precision {precision} is implemented for CPUs (oneDNN); on a "
                             "GPU use fp32 or auto")
        return "fp32"
    flags = cpu_flags() if flags is None else flags
    if precision == "auto":
        return "auto" if auto_candidates(flags) else "fp32"
    if precision == "bf16" and not bf16_possible(flags):
        raise ValueError("precision bf16 needs a CPU with AVX-512 (oneDNN runs bf16 "
                         "natively with AVX512-BF16 or AMX); this CPU has "
                         f"{isa_summary(flags)}: use fp32 or int8")
    return precision


def auto_candidates(flags: frozenset[str] | None = None) -> tuple[str, ...]:
    """The reduced precisions ``auto`` times on this CPU: int8 where it has VNNI or
    AMX-int8, bf16 where it has AVX512-BF16 or AMX-bf16 (and the AVX-512 core oneDNN
    needs for any bf16). Candidates only: none is taken unless measured faster."""
    flags = cpu_flags() if flags is None else flags
    return (("int8",) if flags & VNNI else ()) + \
        (("bf16",) if flags & _BF16 and bf16_possible(flags) else ())


def _training_root(meta: WeightsMeta, data: str | Path) -> Path:
    root = Path(data or meta.provenance.get("data", ""))
    if not root.is_absolute() and not root.exists() and (_REPO / root).exists():
        root = _REPO / root   # recorded relative to the repo root
    return root


def calibration_windows(meta: WeightsMeta, data: str | Path = "", count: int = 16
                        ) -> np.ndarray:
    """Windows of normal training footage for int8 calibration (never test clips).

    Args:
        meta: The weights' metadata (its ``provenance`` names the training clips).
        data: Folder of normal clips (default: the dataset the weights were trained on,
            restricted to their training clips).
        count: Windows to take, spread evenly over the clips.

    Returns:
        float32 (count, T, size, size).

    Raises:
        FileNotFoundError: If no normal clips are found.
    """
    root = _training_root(meta, data)
    try:
        folders = resolve_clips(root, split="Train")
    except FileNotFoundError as err:
        raise FileNotFoundError(f"int8 calibration needs normal training clips: {err}; set "
                                "detector.int8_calibration to a folder of normal clips "
                                "(never test clips)") from None
    # A video model's training clips; an image model's normal class folder (its data set
    # has one folder per class)
    classes = meta.provenance.get("classes") or {}
    names = set(meta.provenance.get("train_clips") or
                [name for name, label in classes.items() if label == 0])
    if names and not data:
        folders = [f for f in folders if f.name in names] or folders
    per_clip = math.ceil(count / len(folders))
    windows = []
    for folder in folders:
        frames = len(list_frames(folder))
        for start in np.linspace(0, max(0, frames - meta.window), per_clip).astype(int):
            clip = load_clip(folder, meta.contract, start=int(start), count=meta.window)
            if len(clip) == meta.window:
                windows.append(clip)
    if not windows:
        raise FileNotFoundError(f"no clip under {root} has {meta.window} frames for int8 "
                                "calibration")
    step = max(1, len(windows) // count)
    return np.stack(windows[::step][:count])
