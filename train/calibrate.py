"""Choosing the frame rule and its threshold from held-out normal clips only.

The threshold of each rule is the (1 − false-alarm rate) quantile of its values on the
held-out normal frames. Which rule the detector uses is chosen without anomalous
footage: a copy of each held-out clip gets a synthetic anomaly (a patch cut around the
clip's most active region, pasted moving several times faster than people walk, as a
bike or skater would), and the rule whose values separate those frames from the normal
ones best (ROC AUC) wins. The per-pixel baseline (the error normal footage always
leaves, at edges and fine texture) is estimated on training clips. Test clips play no part.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import mxnet as mx
import numpy as np
from mxnet.gluon import HybridBlock

from models.weights import load_weights, save_weights, weights_paths
from stream.frames import resolve_clips
from stream.scorer import RULES, Scorer
from train.data import load_clip
from train.metrics import roc_auc_eer, threshold_at
from train.offline import score_clip
from train.plots import plot_histogram

#: Size (rows, columns at model resolution) and speed (pixels per frame) of the synthetic
#: object; Ped2 pedestrians move about 1 px/frame at 227×227.
OBJECT_SIZE = (36, 18)
OBJECT_SPEED = 4
#: The baseline is estimated on every BASELINE_EVERY-th training clip.
BASELINE_EVERY = 4


def inject_fast_object(frames: np.ndarray, size: tuple[int, int] = OBJECT_SIZE,
                       speed: int = OBJECT_SPEED) -> tuple[np.ndarray, np.ndarray]:
    """A copy of a normal clip with a fast-moving patch pasted into its second half.

    Args:
        frames: (F, S, S) preprocessed normal frames.
        size: Patch rows and columns.
        speed: Columns per frame the patch moves.

    Returns:
        The altered frames and per-frame labels (True where the patch is visible).
    """
    n, side = len(frames), frames.shape[-1]
    h, w = size
    motion = np.abs(np.diff(frames, axis=0)).sum(axis=0)
    motion = cv2.blur(motion.astype(np.float32), (w, h))
    cy, cx = np.unravel_index(np.argmax(motion), motion.shape)
    y = int(np.clip(cy - h // 2, 0, side - h))
    x0 = int(np.clip(cx - w // 2, 0, side - w))
    patch = frames[n // 2, y:y + h, x0:x0 + w].copy()
    out = frames.copy()
    labels = np.zeros(n, bool)
    for i, t in enumerate(range(n // 2, n)):
        x = i * speed
        if x + w > side:
            break
        out[t, y:y + h, x:x + w] = patch
        labels[t] = True
    return out, labels


def estimate_baseline(net: HybridBlock, clips: list[np.ndarray], window: int, stride: int,
                      scorer: Scorer, ctx: mx.Context) -> np.ndarray:
    """Mean 4×4 sum per pixel over normal clips (the error normal footage always leaves)."""
    total, count = None, 0
    for frames in clips:
        s = score_clip(net, frames, window, stride, scorer, ctx, maps=True)
        ok = ~np.isnan(s["peak"])
        part = s["sums"][ok].sum(axis=0, dtype=np.float64)
        total = part if total is None else total + part
        count += int(ok.sum())
    if not count:
        raise ValueError("no clip long enough for one window to estimate the baseline")
    return (total / count).astype(np.float32)


def calibrate(net: HybridBlock, clips: list[np.ndarray], window: int, stride: int,
              scorer: Scorer, ctx: mx.Context, false_alarm_rate: float,
              baseline_clips: list[np.ndarray]) -> tuple[dict, dict[str, np.ndarray], dict]:
    """Baseline map (from ``baseline_clips``), thresholds per rule at the false-alarm rate
    and the rule chosen by the synthetic test (both from the held-out ``clips``).

    The baseline comes from other normal clips than the thresholds, so the thresholds'
    false-alarm rate is not biased by it.

    Returns:
        The calibration metadata, the calibration arrays (``baseline``), and the
        held-out normal values per rule (for a histogram).
    """
    baseline = estimate_baseline(net, baseline_clips, window, stride, scorer, ctx)
    runs = []
    for frames in clips:
        normal = score_clip(net, frames, window, stride, scorer, ctx, maps=True)
        altered, marks = inject_fast_object(frames)
        synthetic = score_clip(net, altered, window, stride, scorer, ctx, maps=True)
        runs.append((normal, synthetic, marks, ~np.isnan(normal["peak"])))
    calibrated = Scorer(pixel_threshold=scorer.pixel_threshold, pixel_scale=scorer.pixel_scale,
                        baseline=baseline)
    normal_values = {rule: [] for rule in RULES}
    both = {rule: [] for rule in RULES}        # normal then altered frames, clip by clip
    labels = []
    for normal, synthetic, marks, ok in runs:
        a = calibrated.from_sums(normal["sums"][ok], normal["error"][ok])
        b = calibrated.from_sums(synthetic["sums"][ok], synthetic["error"][ok])
        for rule in RULES:
            normal_values[rule].append(getattr(a, rule))
            both[rule].append(np.r_[getattr(a, rule), getattr(b, rule)])
        labels.append(np.r_[np.zeros(ok.sum(), bool), marks[ok]])
    normal_values = {r: np.concatenate(v) for r, v in normal_values.items()}
    y = np.concatenate(labels)
    aucs = {rule: roc_auc_eer(y, np.concatenate(both[rule]))[0] for rule in RULES}
    chosen = max(RULES, key=lambda r: -1.0 if aucs[r] is None else aucs[r])
    meta = {"rule": chosen,
            "thresholds": {r: threshold_at(v, false_alarm_rate)
                           for r, v in normal_values.items()},
            "false_alarm_rate": false_alarm_rate, "frames": int(len(normal_values["peak"])),
            "stride": stride, "pixel_threshold": scorer.pixel_threshold,
            "baseline": "mean 4x4 sum per pixel over normal training clips",
            "baseline_clips": len(baseline_clips),
            "selection": {"method": "synthetic fast object in held-out normal clips",
                          "object_size": list(OBJECT_SIZE), "object_speed": OBJECT_SPEED,
                          "auc": aucs},
            "percentiles": {r: {str(p): float(np.percentile(v, p)) for p in (50, 90, 99)}
                            for r, v in normal_values.items()}}
    return meta, {"baseline": baseline}, normal_values


def recalibrate(model: str | Path, data: str | Path | None = None, stride: int | None = None,
                false_alarm_rate: float | None = None, ctx: mx.Context | None = None) -> dict:
    """Calibrate existing weights again on the held-out clips their metadata names.

    Args:
        model: Weights to update (their ``.json`` is rewritten).
        data: Dataset root (default: the one recorded at training).
        stride: Detector stride (default: the recorded one, else 5).
        false_alarm_rate: Default: the recorded one, else 0.01.
        ctx: MXNet context.

    Returns:
        The new calibration.

    Raises:
        ValueError: If the metadata names no held-out clips or they are missing.
    """
    ctx = ctx or mx.cpu()
    net, meta = load_weights(model, ctx)
    net.hybridize(static_alloc=True)
    names = meta.provenance.get("val_clips") or []
    if not names:
        raise ValueError(f"{model} records no held-out clips (provenance.val_clips); "
                         "calibrate by retraining with `vadstream train`")
    root = Path(data or meta.provenance.get("data", ""))
    folders = {f.name: f for f in resolve_clips(root, split="Train")}
    missing = [n for n in names if n not in folders]
    if missing:
        raise ValueError(f"held-out clips {missing} not found under {root}; pass --data")
    clips = [load_clip(folders[n], meta.contract) for n in names]
    train_names = [n for n in meta.provenance.get("train_clips", []) if n in folders]
    if not train_names:
        raise ValueError(f"{model} records no training clips (provenance.train_clips) found "
                         f"under {root}; they give the baseline")
    baseline_clips = [load_clip(folders[n], meta.contract) for n in train_names[::BASELINE_EVERY]]
    old = meta.calibration
    stride = stride or int(old.get("stride", 5))
    rate = false_alarm_rate or float(old.get("false_alarm_rate", 0.01))
    scorer = Scorer(pixel_threshold=float(old.get("pixel_threshold", 4 * 255.0)),
                    pixel_scale=meta.contract.pixel_scale)
    meta.calibration, arrays, normal = calibrate(net, clips, meta.window, stride, scorer, ctx,
                                                 rate, baseline_clips)
    save_weights(net, meta, model, arrays)
    rule = meta.calibration["rule"]
    params, _ = weights_paths(model)
    plot_histogram(normal[rule], meta.calibration["thresholds"][rule],
                   params.with_suffix(".calibration.png"), f"{rule} score")
    return meta.calibration
