"""The model's numeric precision: what this machine runs fast and right, and the conversions.

``fp32`` is the reference. The reduced paths of the MXNet backend are MXNet 1.9.1's oneDNN
ones: ``bf16`` (automatic mixed precision: convolutions in bfloat16) and ``int8``
(post-training quantization, calibrated on normal *training* footage only); the
onnxruntime backend has ``int8`` only (:mod:`stream.detector.onnx_int8`).

``auto`` never goes by CPU flags alone (on a CPU with AMX, bf16 measured 0.75x fp32).
The flags only name the *candidates*: int8 where the CPU has VNNI or AMX-int8, bf16
where it has AVX512-BF16 or AMX-bf16. The engine then builds each candidate, times it
against fp32 at its own batch, and runs it only where it is at least
:data:`AUTO_MIN_SPEEDUP` times as fast *and* its decisions on normal calibration windows
equal fp32's (:func:`pick_auto`); everywhere else it runs fp32.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet.gluon import HybridBlock

from models.scoring import LOOKBACK, WINDOW, Scorer, window_sum
from models.weights import WeightsMeta
from stream.capture.frames import list_frames, load_clip, resolve_clips
from stream.defaults import PRECISIONS

log = logging.getLogger(__name__)
_BF16 = frozenset({"avx512_bf16", "amx_bf16"})
#: Flags of a CPU with int8 dot-product instructions (what int8 pays on).
VNNI = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
_AVX512_CORE = frozenset({"avx512f", "avx512bw", "avx512vl", "avx512dq"})
#: Layers kept in fp32 by int8 quantization: the first (one input channel, the raw
#: frame), the last (the reconstruction itself) and the ConvLSTMs' hidden-to-hidden
#: convolutions, whose int8 errors compound over the time steps (in int8 they made the
#: largest pixel error 10x larger on Ped2 test windows: 0.31 instead of 0.03); and their
#: input-to-hidden ones, computed step by step, each read by its step's fused
#: hidden-to-hidden convolution as its sum: MXNet 1.9.1 crashes (a segmentation fault)
#: building that graph with them in int8.
INT8_FP32_LAYERS = ("enc1", "dec2", "h2h", "i2h")
#: Ops left in fp32: MXNet 1.9.1 has no int8 transposed convolution, and its int8
#: convolution-plus-sum fusion fails at run time (uint8 vs int8) on the ConvLSTM.
INT8_FP32_OPS = ("elemwise_add", "Deconvolution", "broadcast_add")
_REPO = Path(__file__).resolve().parents[2]
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


def quantize_int8(net: HybridBlock, windows: np.ndarray, batch: int = 4) -> HybridBlock:
    """The network with its convolutions in int8 (oneDNN), calibrated on ``windows``.

    Calibration takes each layer's min and max over the windows ("naive": KL-divergence
    "entropy" calibration ruined the reconstruction here).

    Args:
        net: An fp32 :class:`models.stae.inference.InferenceSTAE` (not yet optimised).
        windows: Normal windows, (n, T, size, size).
        batch: Windows per calibration pass.

    Returns:
        A hybridized SymbolBlock.
    """
    from mxnet.contrib.quantization import quantize_net

    batch = min(batch, len(windows))
    data = mx.io.NDArrayIter(data=mx.nd.array(windows), batch_size=batch)
    quiet = logging.getLogger("vadstream.quantize")
    quiet.setLevel(logging.WARNING)
    out = quantize_net(net, quantized_dtype="int8", calib_mode="naive", calib_data=data,
                       exclude_layers_match=list(INT8_FP32_LAYERS),
                       exclude_operators=list(INT8_FP32_OPS), ctx=mx.cpu(), logger=quiet)
    out.hybridize(static_alloc=True, static_shape=True)
    return out


def convert_bf16(net: HybridBlock, sample: mx.nd.NDArray | list[mx.nd.NDArray],
                 ctx: mx.Context) -> HybridBlock:
    """The network with its convolutions in bfloat16 (MXNet AMP, oneDNN).

    Args:
        net: An fp32 network.
        sample: One input batch (to build the graph); a list for a network with several
            inputs.
        ctx: Where it runs.
    """
    from mxnet.contrib import amp

    net.hybridize()
    net(*sample) if isinstance(sample, list) else net(sample)
    out = amp.convert_hybrid_block(net, target_dtype="bfloat16", ctx=ctx,
                                   cast_optional_params=True)
    out.hybridize(static_alloc=True, static_shape=True)
    return out
