"""Choosing the frame rule and its threshold from normal footage only.

The threshold of each rule is the (1 − false-alarm rate) quantile of its values on the
normal clips, held-out and training alike (but for the training clips that set the
baseline): how busy a scene is (how many people walk in
it) changes the normal level of every rule from clip to clip, and two held-out clips
alone miss that spread (on Ped2 the last two training clips are among the calmest, and
thresholds from them alone flag most frames of busier normal footage). The validation
loss staying below the training loss says the model has not memorised its training
clips, so their scores are fair normal samples.

Which rule the detector uses is chosen without anomalous footage: copies of each normal
clip (held-out and threshold clips alike) get synthetic anomalies, and the rule whose
values separate those frames from all the normal ones best, pooled over clips as the
online protocol pools them (mean ROC AUC over the kinds), wins. Five kinds, each moving
faster than people walk, as a bike or skater would:

- ``paste``: a patch cut around the clip's most active region, pasted moving sideways
  (4 px per frame at 227×227, about four times walking speed); its edges fade over 4 px
  into the frame it is pasted on (a rectangle's crisp edges are an easy mark no real
  object leaves);
- ``warp``: the band of rows where people walk most, played three times faster than
  the rest of the frame (real people, real background; the band's edges blend over
  15 rows, it speeds up from the frame it is in, and the copy ends before the band
  would run out of frames, so there is no cut);
- ``paste_slow`` and ``warp_slow``: the same at twice walking speed (the patch also
  smaller, 24×12), the harder case;
- ``warp_local``: a person-sized box (40×24 at 227×227) around the clip's most active
  spot played twice as fast as the frame around it, its edges blended over 9 px: real
  people, one or two at a time, moving too fast (a skater among walkers), with no
  pasted edge at all.

The recall of each kind at each rule's threshold is recorded beside its AUC. Asked to
(``smoothing``, ``vadstream calibrate --smoothing 1,3,5``), each rule is compared at every
length of the causal moving mean given (each clip a stream, as live); the rule and length
with the best mean AUC win, and the thresholds are those of the smoothed values. By
default only the unsmoothed values are: on Ped2 these proxies preferred a smoothed
``peak`` that the test clips did not bear out (docs/results/ped2.md).

The per-pixel baseline (the error normal footage always leaves, at edges and fine
texture) is estimated on training clips. Test clips play no part.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import partial
from pathlib import Path

import cv2
import mxnet as mx
import numpy as np
from mxnet.gluon import HybridBlock

from models.registry import get_family
from models.scoring import PIXEL_THRESHOLD, RULES, Scorer, smooth_values, spread_map
from models.weights import load_weights, save_weights, weights_paths
from stream.capture.frames import resolve_clips
from stream.defaults import STRIDE
from train.data import load_clip
from train.metrics import roc_auc_eer, threshold_at
from train.offline import score_clip
from train.plots import plot_histogram

#: The share of held-out normal frames (or images) a calibrated threshold flags: the one
#: home of ``training.false_alarm_rate``'s default, clips and images alike.
FALSE_ALARM_RATE = 0.01

#: Size (rows, columns) and speed (pixels per frame) of the synthetic object at 227×227
#: (scaled to other frame sides); Ped2 pedestrians move about 1 px/frame at 227×227.
OBJECT_SIZE = (36, 18)
OBJECT_SPEED = 4
#: Pixels at 227×227 over which a pasted object's edges fade into the frame.
OBJECT_FEATHER = 4
#: Size (rows, columns) at 227×227 of the box ``warp_local`` speeds up, and the pixels
#: its edges blend over (an odd kernel).
LOCAL_BOX = (40, 24)
LOCAL_BLEND = 9
#: How many times faster than the rest of the frame the box plays.
LOCAL_SPEED = 2
#: Rows in the fast band at 227×227 (scaled likewise), its speed-up, and the rows its
#: edges blend over.
WARP_BAND = 56
WARP_SPEED = 3
WARP_BLEND = 15
#: The frame side the sizes above are given at.
REFERENCE_SIDE = 227


def _scaled(pixels: float, side: int) -> float:
    """``pixels`` at 227×227 as pixels at ``side``×``side``."""
    return pixels * side / REFERENCE_SIDE
#: The baseline is estimated on every BASELINE_EVERY-th training clip.
BASELINE_EVERY = 4


def inject_fast_object(frames: np.ndarray, size: tuple[int, int] = OBJECT_SIZE,
                       speed: float = OBJECT_SPEED) -> tuple[np.ndarray, np.ndarray]:
    """A copy of a normal clip with a fast-moving patch pasted into its second half.

    Args:
        frames: (F, S, S) preprocessed normal frames.
        size: Patch rows and columns at 227×227 (scaled to S).
        speed: Columns per frame the patch moves at 227×227 (scaled to S).

    Returns:
        The altered frames and per-frame labels (True where the patch is visible).
    """
    n, side = len(frames), frames.shape[-1]
    h, w = (max(2, round(_scaled(v, side))) for v in size)
    speed = _scaled(speed, side)
    y, x0 = _busiest_box(frames, h, w)
    patch = frames[n // 2, y:y + h, x0:x0 + w].copy()
    alpha = _feathered(h, w, _scaled(OBJECT_FEATHER, side))
    out = frames.copy()
    labels = np.zeros(n, bool)
    for i, t in enumerate(range(n // 2, n)):
        x = round(i * speed)
        if x + w > side:
            break
        under = out[t, y:y + h, x:x + w]
        out[t, y:y + h, x:x + w] = alpha * patch + (1 - alpha) * under
        labels[t] = True
    return out, labels


def _busiest_box(frames: np.ndarray, h: int, w: int) -> tuple[int, int]:
    """Top-left corner (row, column) of the h×w box of the frames where they change most
    over the clip, inside the frame."""
    side = frames.shape[-1]
    motion = np.abs(np.diff(frames, axis=0)).sum(axis=0)
    motion = cv2.blur(motion.astype(np.float32), (w, h))
    cy, cx = np.unravel_index(np.argmax(motion), motion.shape)
    return int(np.clip(cy - h // 2, 0, side - h)), int(np.clip(cx - w // 2, 0, side - w))


def _odd_kernel(pixels: float, side: int) -> int:
    """A blur kernel of ``pixels`` at 227×227 scaled to ``side``: odd, at least 3."""
    return max(3, round(_scaled(pixels, side)) | 1)


def _feathered(h: int, w: int, feather: float) -> np.ndarray:
    """(h, w) opacity: 1 inside, falling linearly to 1/(f+1) at the border over ``f``
    pixels (f = ``feather`` rounded, at least 1, at most half the shorter side)."""
    f = int(min(max(1, round(feather)), max(1, min(h, w) // 2)))

    def ramp(n: int) -> np.ndarray:
        i = np.arange(n)
        return np.minimum(1.0, (np.minimum(i, n - 1 - i) + 1) / (f + 1))
    return np.outer(ramp(h), ramp(w)).astype(np.float32)


def _speed_up(frames: np.ndarray, weight: np.ndarray, speed: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """Where ``weight`` (broadcast over a frame) is 1, frames from a quarter of the way in
    play ``speed`` times faster: frame t shows them as at t0 + speed·(t − t0); between 0
    and 1 the two blend. The copy ends when the fast part runs out of source frames."""
    n = len(frames)
    start = n // 4
    end = start + (n - 1 - start) // speed + 1       # the last t whose source is < n, + 1
    out = frames[:end].copy()
    labels = np.zeros(end, bool)
    for t in range(start + 1, end):
        out[t] = weight * frames[start + speed * (t - start)] + (1 - weight) * frames[t]
        labels[t] = True
    return out, labels


def inject_time_warp(frames: np.ndarray, band: int = WARP_BAND, speed: int = WARP_SPEED
                     ) -> tuple[np.ndarray, np.ndarray]:
    """A copy of a normal clip whose busiest band of rows runs ``speed`` times faster from
    a quarter of the way in: frame t shows that band as it was at t0 + speed·(t − t0).

    The band starts from the frame it is in (no cut), and the copy ends when the band
    runs out of source frames (no cut back either).

    Args:
        frames: (F, S, S) preprocessed normal frames.
        band: Rows in the band at 227×227 (scaled to S).
        speed: Speed-up.

    Returns:
        The altered frames (fewer than F) and per-frame labels (True where the band is fast).
    """
    side = frames.shape[-1]
    band = max(2, round(_scaled(band, side)))
    blend = _odd_kernel(WARP_BLEND, side)
    motion = np.abs(np.diff(frames, axis=0)).sum(axis=(0, 2))
    y = int(np.argmax(np.convolve(motion, np.ones(band), "valid")))
    weight = np.zeros((side, 1), np.float32)
    weight[y:y + band] = 1
    weight = cv2.GaussianBlur(weight, (1, blend), 0)
    return _speed_up(frames, weight, speed)


def inject_local_warp(frames: np.ndarray, box: tuple[int, int] = LOCAL_BOX,
                      speed: int = LOCAL_SPEED) -> tuple[np.ndarray, np.ndarray]:
    """A copy of a normal clip in which a box around its most active spot runs ``speed``
    times faster than the frame around it from a quarter of the way in (as
    :func:`inject_time_warp`, but one person-sized box rather than a band of rows).

    Args:
        frames: (F, S, S) preprocessed normal frames.
        box: Rows and columns at 227×227 (scaled to S).
        speed: Speed-up.

    Returns:
        The altered frames (fewer than F) and per-frame labels (True where the box is fast).
    """
    side = frames.shape[-1]
    h, w = (max(2, round(_scaled(v, side))) for v in box)
    blend = _odd_kernel(LOCAL_BLEND, side)
    y, x = _busiest_box(frames, h, w)
    weight = np.zeros((side, side), np.float32)
    weight[y:y + h, x:x + w] = 1
    return _speed_up(frames, cv2.GaussianBlur(weight, (blend, blend), 0), speed)


def split_training_clips(clips: list) -> tuple[list, list]:
    """Training clips for the baseline (every BASELINE_EVERY-th) and for the thresholds
    (the rest): a threshold measured on the clips that set the baseline would be low."""
    return clips[::BASELINE_EVERY], [c for i, c in enumerate(clips) if i % BASELINE_EVERY]


#: Lengths of the causal moving mean (frames) calibration compares for every rule by
#: default (the detector thresholds a stream's rule value after it, ``scorer.smooth``).
SMOOTHING = (1,)
#: The synthetic anomalies the rule is chosen with: each kind fast (several times walking
#: speed) and slow (twice walking speed, the harder case of a bike or a skater among
#: walkers; the slow patch also smaller, a far object), and a local speed-up of real people.
SYNTHETIC = {
    "paste": inject_fast_object,
    "warp": inject_time_warp,
    "paste_slow": partial(inject_fast_object, size=(24, 12), speed=2),
    "warp_slow": partial(inject_time_warp, speed=2),
    "warp_local": inject_local_warp,
}


def estimate_baseline(net: HybridBlock, clips: list[np.ndarray], window: int, stride: int,
                      scorer: Scorer, ctx: mx.Context) -> tuple[np.ndarray, np.ndarray]:
    """Mean 4×4 sum per pixel over normal clips (the error normal footage always leaves),
    and the ``relative`` rule's spread (:func:`models.scoring.spread_map` of the sums'
    per-pixel standard deviation)."""
    total = squares = None
    count = 0
    for frames in clips:
        s = score_clip(net, frames, window, stride, scorer, ctx, maps=True)
        ok = ~np.isnan(s["peak"])
        sums = s["sums"][ok].astype(np.float64)
        part, part2 = sums.sum(axis=0), np.square(sums).sum(axis=0)
        total = part if total is None else total + part
        squares = part2 if squares is None else squares + part2
        count += int(ok.sum())
    if not count:
        raise ValueError("no clip long enough for one window to estimate the baseline")
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - np.square(mean), 0.0))
    return mean.astype(np.float32), spread_map(std)


def pooled(values: list[np.ndarray], k: int, marks: list[np.ndarray] | None = None
           ) -> np.ndarray:
    """Clips' values through a k-frame smoother (each clip a stream), scored frames only
    (of them, the marked ones)."""
    out = []
    for i, v in enumerate(values):
        v = smooth_values(v, k)
        keep = ~np.isnan(v) if marks is None else ~np.isnan(v) & marks[i]
        out.append(v[keep])
    return np.concatenate(out) if out else np.zeros(0)


def calibrate(net: HybridBlock, clips: list[np.ndarray], window: int, stride: int,
              scorer: Scorer, ctx: mx.Context, false_alarm_rate: float,
              baseline_clips: list[np.ndarray], train_clips: list[np.ndarray] | None = None,
              rules: tuple[str, ...] = RULES, smoothing: tuple[int, ...] = SMOOTHING
              ) -> tuple[dict, dict[str, np.ndarray], dict]:
    """Baseline and spread maps (from ``baseline_clips``); the rule (and smoothing) chosen
    by the synthetic test on all the threshold clips (``clips``, the held-out ones, and
    ``train_clips``, which should not include ``baseline_clips``), pooled; thresholds per
    rule at the false-alarm rate on those clips' normal frames. The recorded
    ``held_out_false_alarm_rate`` is measured on the held-out clips, which are among those
    the thresholds come from: an in-sample figure.

    ``rules`` are those the model's family can compute (``ModelFamily.rules``: no
    ``motion`` for a window of one frame); only they are compared and get a threshold.
    ``smoothing`` are the moving-mean lengths compared for each (the calibration's
    ``smooth`` is the winner's).

    Returns:
        The calibration metadata, the calibration arrays (``baseline``, ``spread``), and the
        normal values per rule the thresholds come from (for a histogram).
    """
    baseline, spread = estimate_baseline(net, baseline_clips, window, stride, scorer, ctx)
    calibrated = Scorer(pixel_threshold=scorer.pixel_threshold, pixel_scale=scorer.pixel_scale,
                        baseline=baseline, spread=spread)
    normal_clips = {rule: [] for rule in rules}          # per clip, raw
    synthetic_clips = {kind: {rule: [] for rule in rules} for kind in SYNTHETIC}
    marks_of = {kind: [] for kind in SYNTHETIC}
    held_out_clips = len(clips)
    # Every normal clip but the baseline's gets each kind of synthetic anomaly, and the
    # AUC pools all of their frames, as the online protocol pools clips: busy and calm
    # scenes alike, so a rule whose scale follows the crowd pays for it.
    for frames in [*clips, *(train_clips or [])]:
        normal = score_clip(net, frames, window, stride, calibrated, ctx)
        for rule in rules:
            normal_clips[rule].append(normal[rule])
        for kind, inject in SYNTHETIC.items():
            altered, marks = inject(frames)
            synthetic = score_clip(net, altered, window, stride, calibrated, ctx)
            for rule in rules:
                synthetic_clips[kind][rule].append((synthetic[rule], marks))
            marks_of[kind].append(int((~np.isnan(synthetic["peak"]) & marks).sum()))

    by_smooth = {}
    for k in smoothing:
        normal_k = {r: pooled(normal_clips[r], k) for r in rules}
        thresholds_k = {r: threshold_at(v, false_alarm_rate) for r, v in normal_k.items()}
        aucs_k, recalls_k = {}, {}
        for kind in SYNTHETIC:
            aucs_k[kind], recalls_k[kind] = {}, {}
            for rule in rules:
                values = [v for v, _ in synthetic_clips[kind][rule]]
                altered = pooled(values, k, [m for _, m in synthetic_clips[kind][rule]])
                labels = np.r_[np.zeros(len(normal_k[rule]), bool), np.ones(len(altered), bool)]
                aucs_k[kind][rule] = roc_auc_eer(labels, np.r_[normal_k[rule], altered])[0]
                recalls_k[kind][rule] = (float((altered >= thresholds_k[rule]).mean())
                                         if len(altered) else None)
        by_smooth[k] = {"normal": normal_k, "thresholds": thresholds_k, "auc": aucs_k,
                        "recall": recalls_k,
                        "mean_auc": {r: float(np.mean([aucs_k[q][r] or 0.0 for q in SYNTHETIC]))
                                     for r in rules},
                        "mean_recall": {r: float(np.mean([recalls_k[q][r] or 0.0
                                                          for q in SYNTHETIC]))
                                        for r in rules}}
    # The rule and smoothing length whose mean AUC is highest (the shorter smoothing on a tie).
    smooth, chosen = max(((k, r) for k in smoothing for r in rules),
                         key=lambda kr: (by_smooth[kr[0]]["mean_auc"][kr[1]], -kr[0]))
    best = by_smooth[smooth]
    normal_values, thresholds = best["normal"], best["thresholds"]
    aucs, recalls = best["auc"], best["recall"]
    mean_auc, mean_recall = best["mean_auc"], best["mean_recall"]
    held_out = {r: pooled(normal_clips[r][:held_out_clips], smooth) for r in rules}
    meta = {"rule": chosen, "rules": list(rules), "thresholds": thresholds, "smooth": smooth,
            "false_alarm_rate": false_alarm_rate, "frames": int(len(normal_values["peak"])),
            "held_out_frames": int(len(held_out["peak"])),
            "held_out_false_alarm_rate": {r: float((v >= thresholds[r]).mean())
                                          for r, v in held_out.items()},
            "stride": stride, "pixel_threshold": scorer.pixel_threshold,
            "baseline": "mean 4x4 sum per pixel over normal training clips",
            "spread": "max(std of the 4x4 sums per pixel, their median std) on those clips",
            "baseline_clips": len(baseline_clips),
            "selection": {"method": "mean AUC over synthetic anomalies in the held-out and "
                                    "threshold clips, frames pooled over clips",
                          "kinds": list(SYNTHETIC), "synthetic_frames": {
                              k: sum(v) for k, v in marks_of.items()},
                          "object_size": list(OBJECT_SIZE), "object_speed": OBJECT_SPEED,
                          "object_feather": OBJECT_FEATHER,
                          "warp_band": WARP_BAND, "warp_speed": WARP_SPEED,
                          "local_box": list(LOCAL_BOX), "local_blend": LOCAL_BLEND,
                          "local_speed": LOCAL_SPEED,
                          "auc": aucs, "mean_auc": mean_auc,
                          "recall_at_threshold": recalls, "mean_recall": mean_recall,
                          "smoothing": {str(k): {"mean_auc": v["mean_auc"],
                                                 "mean_recall": v["mean_recall"]}
                                        for k, v in by_smooth.items()}},
            "percentiles": {r: {str(p): float(np.percentile(v, p)) for p in (50, 90, 99)}
                            for r, v in normal_values.items()}}
    return meta, {"baseline": baseline, "spread": spread}, normal_values


def family_calibrator(path: str | None) -> Callable:
    """The calibration a family names (``ModelFamily.calibrator``, ``"module:function"``),
    or :func:`calibrate` (which takes no ``meta``) for None."""
    if path is None:
        return lambda *args, meta=None, **kwargs: calibrate(*args, **kwargs)
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def recalibrate(model: str | Path, data: str | Path | None = None, stride: int | None = None,
                false_alarm_rate: float | None = None, ctx: mx.Context | None = None,
                smoothing: tuple[int, ...] = SMOOTHING) -> dict:
    """Calibrate existing weights again on the held-out clips their metadata names.

    Args:
        model: Weights to update (their ``.json`` is rewritten).
        data: Dataset root (default: the one recorded at training).
        stride: Detector stride (default: the recorded one, else :data:`stream.defaults.STRIDE`).
        false_alarm_rate: Default: the recorded one, else :data:`FALSE_ALARM_RATE`.
        ctx: MXNet context.
        smoothing: Moving-mean lengths to compare (:func:`calibrate`).

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
    train_clips = [load_clip(folders[n], meta.contract) for n in train_names]
    old = meta.calibration
    stride = stride or int(old.get("stride", STRIDE))
    rate = false_alarm_rate or float(old.get("false_alarm_rate", FALSE_ALARM_RATE))
    scorer = Scorer(pixel_threshold=float(old.get("pixel_threshold", PIXEL_THRESHOLD)),
                    pixel_scale=meta.contract.pixel_scale)
    family = get_family(meta.model)
    stride = min(stride, family.temporal(meta).scorable)
    calibrator = family_calibrator(family.calibrator)
    meta.calibration, arrays, normal = calibrator(net, clips, meta.window, stride, scorer, ctx,
                                                  rate, *split_training_clips(train_clips),
                                                  rules=family.rules(meta), meta=meta,
                                                  **({"smoothing": smoothing}
                                                     if smoothing != SMOOTHING else {}))
    save_weights(net, meta, model, arrays)
    rule = meta.calibration["rule"]
    params, _ = weights_paths(model)
    plot_histogram(normal[rule], meta.calibration["thresholds"][rule],
                   params.with_suffix(".calibration.png"), f"{rule} score")
    return meta.calibration
