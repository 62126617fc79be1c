"""The model's numeric precision: which one this machine runs fast, and the conversions.

``fp32`` is the reference. The reduced paths are MXNet 1.9.1's oneDNN ones: ``bf16``
(automatic mixed precision: convolutions in bfloat16) and ``int8`` (post-training
quantization, calibrated on normal *training* footage only). ``auto`` takes the fastest
reduced path whose instructions this CPU has, and fp32 elsewhere:

- bf16 where the CPU has AVX512-BF16 or AMX: oneDNN 2.4 has no bf16 convolution for a CPU
  without AVX-512 at all (it cannot create the primitive);
- int8 where it has VNNI; without VNNI, oneDNN's AVX2 int8 convolutions are only about a
  third faster than fp32 here, and int8 loses some accuracy, so it stays opt-in.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet.gluon import HybridBlock

from models.weights import WeightsMeta
from stream.capture.frames import list_frames, load_clip, resolve_clips

log = logging.getLogger(__name__)
PRECISIONS = ("auto", "fp32", "bf16", "int8")
_BF16 = frozenset({"avx512_bf16", "amx_bf16"})
_VNNI = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
_AVX512_CORE = frozenset({"avx512f", "avx512bw", "avx512vl", "avx512dq"})
#: Layers kept in fp32 by int8 quantization: the first (one input channel, the raw
#: frame), the last (the reconstruction itself) and the ConvLSTMs' hidden-to-hidden
#: convolutions, whose int8 errors compound over the time steps (in int8 they made the
#: largest pixel error 10x larger on Ped2 test windows: 0.31 instead of 0.03).
INT8_FP32_LAYERS = ("enc1", "dec2", "h2h")
#: Ops left in fp32: MXNet 1.9.1 has no int8 transposed convolution, and its int8
#: convolution-plus-sum fusion fails at run time (uint8 vs int8) on the ConvLSTM.
INT8_FP32_OPS = ("elemwise_add", "Deconvolution", "broadcast_add")
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
    """The precision to run: ``precision`` itself, or what ``auto`` means on this machine.

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
        return "bf16" if flags & _BF16 else "int8" if flags & _VNNI else "fp32"
    if precision == "bf16" and not bf16_possible(flags):
        raise ValueError("precision bf16 needs a CPU with AVX-512 (oneDNN runs bf16 "
                         "natively with AVX512-BF16 or AMX); this CPU has "
                         f"{isa_summary(flags)}: use fp32 or int8")
    return precision


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
    names = set(meta.provenance.get("train_clips") or [])
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


def convert_bf16(net: HybridBlock, sample: mx.nd.NDArray, ctx: mx.Context) -> HybridBlock:
    """The network with its convolutions in bfloat16 (MXNet AMP, oneDNN).

    Args:
        net: An fp32 network.
        sample: One input batch (to build the graph).
        ctx: Where it runs.
    """
    from mxnet.contrib import amp

    net.hybridize()
    net(sample)
    out = amp.convert_hybrid_block(net, target_dtype="bfloat16", ctx=ctx,
                                   cast_optional_params=True)
    out.hybridize(static_alloc=True, static_shape=True)
    return out
