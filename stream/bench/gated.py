"""The motion gate's share, for the bench: of the windows a live detector scores on the
bench's footage (the Ped2 test clips, every window at the detector's stride), how many the
gate (:mod:`stream.detector.gate`) skips with it on: those whose frames have no 4x4 block
that changed by more than the calibrated bound."""

from __future__ import annotations

from pathlib import Path

from models.registry import get_family
from models.scoring import ScorerConfig
from models.weights import load_calibration_arrays, read_meta
from stream.capture.frames import load_clip, resolve_clips
from stream.detector.gate import gate_for
from stream.detector.windows import window_starts


def gated_share(model: str | Path, data: Path, stride: int, setting: str | float = "on"
                ) -> dict:
    """The share of windows the motion gate skips on the ``Test`` clips of ``data``.

    Args:
        model: Weights (their calibrated gate and scorer).
        data: The Ped2 root the bench replays.
        stride: The detector's stride.
        setting: ``detector.gate``: ``on`` (the weights' calibrated gate) or a bound.

    Returns:
        ``share`` (skipped windows over all, in [0, 1]), ``skipped``, ``windows``,
        ``clips``, ``bound`` (the gate's, 0-255 4x4 sums) and ``setting``.

    Raises:
        ValueError: If the model cannot be gated (no calibrated gate under ``on``, a
            one-frame window, a smoothing scorer), saying why.
        FileNotFoundError: If ``data`` holds no test clips.
    """
    meta = read_meta(model)
    family = get_family(meta.model)
    scorer = family.scorer(meta, load_calibration_arrays(model, meta), ScorerConfig())
    gate = gate_for(setting, meta.calibration, meta.window, getattr(scorer, "smooth", 1),
                    meta.contract.pixel_scale, str(model))
    if gate is None:        # "off": nothing is gated
        raise ValueError(f"gated share: detector.gate {setting!r} gates nothing; use on or "
                         "a bound")
    folders = resolve_clips(Path(data), split="Test")
    skipped = windows = 0
    for folder in folders:       # a clip at a time: all of them at once is large
        frames = load_clip(folder, meta.contract)
        for start, _, _ in window_starts(len(frames), meta.window, stride):
            windows += 1
            skipped += gate.still(frames[start:start + meta.window], scorer.threshold)
    return {"share": round(skipped / windows, 4) if windows else 0.0, "skipped": skipped,
            "windows": windows, "clips": len(folders), "bound": gate.bound,
            "setting": setting}
