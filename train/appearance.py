"""Calibration and validation of the object-centric appearance family
(:mod:`models.object_ae`), and its fusion with a motion model, on normal footage and
synthetic proxies only.

Validation protocol (no test clip plays a part):

- normal frames: the held-out training clips (the last ``val_clips`` of ``Train/``; on
  Ped2 Train014-016), which the autoencoder never trained on;
- anomalous frames: copies of those clips with each synthetic kind of
  :data:`train.calibrate.SYNTHETIC` (objects and people moving too fast) and of
  :data:`train.proxies.APPEARANCE` (objects that look wrong moving at walking pace, and an
  anomaly in a crowd) pasted in;
- per kind: the frame ROC AUC of the held-out normal frames against the kind's marked
  frames, and the recall at the calibrated threshold; the mean over kinds decides.

The threshold is the (1 − false-alarm rate) quantile of the scores of the normal frames
of the held-out clips and of the training clips that set no baseline (as
:func:`train.calibrate.calibrate` takes it: busy and calm scenes alike); its false-alarm
rate on the held-out clips alone is recorded too.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet.gluon import HybridBlock

from models.object_ae.family import RULE, ObjectScorer
from models.object_ae.network import ObjectAE
from models.object_ae.regions import RegionFinder
from models.registry import get_family
from models.scoring import Scorer, ScorerConfig
from models.weights import WeightsMeta, load_calibration_arrays, load_weights
from stream.capture.frames import resolve_clips
from train.calibrate import SYNTHETIC, pooled
from train.data import load_clip
from train.metrics import roc_auc_eer, threshold_at
from train.offline import score_clip
from train.plots import plot_kind_aucs
from train.proxies import APPEARANCE, CONFIRM

#: Crop errors (mean squared error in model units) are reported ×1000.
ERROR_SCALE = 1000.0
#: Lengths of the stream's causal moving mean compared on the proxies.
SMOOTHING = (1, 5)
#: Every proxy kind: the motion ones of :mod:`train.calibrate`, the appearance ones.
KINDS = {**SYNTHETIC, **APPEARANCE}
#: Kind sets by name: the eight that choose, the three that only confirm, and all.
KIND_SETS = {"choice": KINDS, "confirm": CONFIRM, "all": {**KINDS, **CONFIRM}}


def _network(net: HybridBlock) -> ObjectAE:
    if not isinstance(net, ObjectAE):
        raise ValueError(f"object calibration needs an ObjectAE network, got "
                         f"{type(net).__name__}")
    return net


def score_kinds(net: HybridBlock, window: int, scorer, ctx: mx.Context,
                clips: list[np.ndarray], kinds: dict | None = None
                ) -> tuple[list[np.ndarray], dict[str, list[tuple[np.ndarray, np.ndarray]]]]:
    """Per clip, the unsmoothed frame scores of the normal clip and of each proxy kind's
    copy of it (with the kind's labels)."""
    kinds = KINDS if kinds is None else kinds
    normal, synthetic = [], {k: [] for k in kinds}
    for frames in clips:
        normal.append(score_clip(net, frames, window, 1, scorer, ctx)["peak"])
        for kind, inject in kinds.items():
            altered, marks = inject(frames)
            synthetic[kind].append((score_clip(net, altered, window, 1, scorer, ctx)["peak"],
                                    marks))
    return normal, synthetic


def kind_figures(normal: np.ndarray, synthetic: dict[str, list[tuple[np.ndarray, np.ndarray]]],
                 threshold: float, k: int) -> dict:
    """AUC and recall at ``threshold`` per kind (normal: pooled held-out normal values)."""
    auc, recall = {}, {}
    for kind, pairs in synthetic.items():
        altered = pooled([v for v, _ in pairs], k, [m for _, m in pairs])
        labels = np.r_[np.zeros(len(normal), bool), np.ones(len(altered), bool)]
        auc[kind] = roc_auc_eer(labels, np.r_[normal, altered])[0]
        recall[kind] = float((altered >= threshold).mean()) if len(altered) else None
    mean = float(np.mean([a or 0.0 for a in auc.values()]))
    appearance = float(np.mean([auc[q] or 0.0 for q in auc if q in APPEARANCE]))
    return {"auc": auc, "recall_at_threshold": recall, "mean_auc": mean,
            "mean_auc_appearance": appearance,
            "mean_recall": float(np.mean([r or 0.0 for r in recall.values()]))}


def calibrate_objects(net: HybridBlock, clips: list[np.ndarray], window: int, stride: int,
                      scorer: Scorer, ctx: mx.Context, false_alarm_rate: float,
                      baseline_clips: list[np.ndarray],
                      train_clips: list[np.ndarray] | None = None,
                      rules: tuple[str, ...] = (RULE,), meta: WeightsMeta | None = None,
                      smoothing: tuple[int, ...] = SMOOTHING) -> tuple[dict, dict, dict]:
    """Threshold, smoothing and validation figures of object autoencoder weights
    (the family's calibrator; arguments as :func:`train.calibrate.calibrate`'s).

    ``clips`` are the held-out ones (validation); ``train_clips`` (not
    ``baseline_clips``: this family has no baseline map) add normal frames to the
    threshold. The smoothing length with the best mean AUC over the proxy kinds on the
    held-out clips wins (the shorter on a tie).

    Returns:
        The calibration metadata, no arrays, and the normal values the threshold comes
        from (``{"object": ...}``).
    """
    ae = _network(net)
    finder = RegionFinder()
    objects = ObjectScorer(1.0, ae.size, ae.crop, ae.step, scorer.pixel_scale, finder,
                           scale=ERROR_SCALE)
    held_normal, synthetic = score_kinds(net, window, objects, ctx, clips)
    extra = [score_clip(net, f, window, 1, objects, ctx)["peak"] for f in train_clips or []]
    by_smooth = {}
    for k in smoothing:
        normal_all = pooled([*held_normal, *extra], k)
        threshold = threshold_at(normal_all, false_alarm_rate)
        held = pooled(held_normal, k)
        figures = kind_figures(held, synthetic, threshold, k)
        figures.update(threshold=threshold, normal=normal_all,
                       held_out_false_alarm_rate=float((held >= threshold).mean()))
        by_smooth[k] = figures
    smooth = max(smoothing, key=lambda k: (by_smooth[k]["mean_auc"], -k))
    best = by_smooth[smooth]
    calibration = {
        "rule": RULE, "rules": [RULE], "thresholds": {RULE: best["threshold"]},
        "smooth": smooth, "false_alarm_rate": false_alarm_rate, "stride": 1,
        "error_scale": ERROR_SCALE, "regions": asdict(finder),
        "frames": int(len(best["normal"])),
        "held_out_frames": int(len(pooled(held_normal, smooth))),
        "held_out_false_alarm_rate": {RULE: best["held_out_false_alarm_rate"]},
        "selection": {
            "method": "mean frame AUC over the proxy kinds, held-out normal frames against "
                      "each kind's marked frames of the held-out clips",
            "kinds": list(KINDS),
            "smoothing": {str(k): {key: v[key] for key in (
                "auc", "recall_at_threshold", "mean_auc", "mean_auc_appearance",
                "mean_recall", "threshold", "held_out_false_alarm_rate")}
                for k, v in by_smooth.items()}},
        "percentiles": {RULE: {str(p): float(np.percentile(best["normal"], p))
                               for p in (50, 90, 99)}},
    }
    return calibration, {}, {RULE: best["normal"]}


def _load_clips(root: Path, names: list[str], meta: WeightsMeta) -> list[np.ndarray]:
    folders = {f.name: f for f in resolve_clips(root, split="Train")}
    missing = [n for n in names if n not in folders]
    if missing:
        raise ValueError(f"clips {missing} not found under {root}; pass --data")
    return [load_clip(folders[n], meta.contract) for n in names]


def frame_scores(weights: str | Path, clips: list[np.ndarray], ctx: mx.Context,
                 kinds: dict) -> tuple[list[np.ndarray], dict]:
    """Unsmoothed calibrated-rule values of any weights on normal clips and their proxy
    copies (:func:`score_kinds` with the weights' own scorer)."""
    net, meta = load_weights(weights, ctx)
    net.hybridize(static_alloc=True)
    family = get_family(meta.model)
    scorer = family.scorer(meta, load_calibration_arrays(weights, meta), ScorerConfig(smooth=1,
                           threshold=1e9))
    nets = family.inference(net, meta, ctx)
    run = nets[max(nets)]
    normal, synthetic = [], {k: [] for k in kinds}
    for frames in clips:
        normal.append(score_clip(run, frames, meta.window, 1, scorer, ctx)["score"])
        for kind, inject in kinds.items():
            altered, marks = inject(frames)
            synthetic[kind].append((score_clip(run, altered, meta.window, 1, scorer,
                                               ctx)["score"], marks))
    return normal, synthetic


def fusion_figures(motion: tuple, appearance: tuple, false_alarm_rate: float,
                   weights: tuple[float, ...] = (0.25, 0.5, 0.75)) -> dict:
    """Fusion rules compared on the same clips: each model's frame value divided by its
    own (1 − rate) quantile on the clips' normal frames (1: its threshold), then ``max``
    of the two or ``sum_w``, w·motion + (1 − w)·appearance; each fused rule's threshold at
    the rate on those normal frames. Frames either model cannot score yet are left out.
    """
    (m_normal, m_synth), (a_normal, a_synth) = motion, appearance

    def scale(normal):
        return threshold_at(np.concatenate([v[np.isfinite(v)] for v in normal]),
                            false_alarm_rate)

    sm, sa = scale(m_normal), scale(a_normal)
    rules = {"motion": (1.0,), "appearance": (0.0,), "max": None,
             **{f"sum_{w:g}": (w,) for w in weights}}

    def fuse(rule, m, a):
        m, a = m / sm, a / sa
        if rule == "max":
            return np.maximum(m, a)
        w = rules[rule][0]
        return w * m + (1 - w) * a

    out = {"scales": {"motion": sm, "appearance": sa}}
    for rule in rules:
        normal = [fuse(rule, m, a) for m, a in zip(m_normal, a_normal, strict=True)]
        normal_all = pooled(normal, 1)
        threshold = threshold_at(normal_all, false_alarm_rate)
        synthetic = {kind: [(fuse(rule, m, a), marks) for (m, marks), (a, _)
                            in zip(m_synth[kind], a_synth[kind], strict=True)]
                     for kind in m_synth}
        figures = kind_figures(normal_all, synthetic, threshold, 1)
        figures["threshold"] = threshold
        out[rule] = figures
    return out


def plot_result(result: dict, path: Path) -> None:
    """Bars of the AUC per kind: the object autoencoder, and each fusion candidate."""
    rows = {"object_ae (Train014-016)": result["object_ae"]["auc"]}
    for rule, figures in (result.get("fusion") or {}).items():
        if isinstance(figures, dict) and "auc" in figures:
            rows[f"{rule} (Train015-016)"] = figures["auc"]
    plot_kind_aucs(rows, path, f"validation AUC per proxy kind ({result['weights']})")


def _cached_scores(weights: str | Path, clips: list[np.ndarray], names: list[str],
                   ctx: mx.Context, cache: str | None, kinds: dict | None = None
                   ) -> tuple[list[np.ndarray], dict]:
    """:func:`frame_scores` of ``kinds`` (all :data:`KINDS` by default), read from /
    written to ``cache`` (JSON) when given and it was computed for the same weights,
    clips and kinds."""
    kinds = KINDS if kinds is None else kinds
    key = {"weights": str(weights), "clips": names, "kinds": list(kinds)}
    if cache and Path(cache).is_file():
        stored = json.loads(Path(cache).read_text())
        if stored["key"] == key:
            return ([np.array(v, float) for v in stored["normal"]],
                    {q: [(np.array(v, float), np.array(m, bool)) for v, m in pairs]
                     for q, pairs in stored["synthetic"].items()})
    normal, synthetic = frame_scores(weights, clips, ctx, kinds)
    if cache:
        Path(cache).write_text(json.dumps({
            "key": key, "normal": [v.tolist() for v in normal],
            "synthetic": {q: [(v.tolist(), m.tolist()) for v, m in pairs]
                          for q, pairs in synthetic.items()}}))
    return normal, synthetic


def main(argv: list[str] | None = None) -> int:
    """``python -m train.appearance``: validation figures of object autoencoder weights
    (and their fusion with a motion model) on held-out normal clips and proxies.

    Weights without a calibrated threshold (a training checkpoint) get one at the rate on
    the held-out clips' normal frames (an in-sample threshold, said so in the output);
    the smoothing is chosen as the calibration chooses it.
    """
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--weights", required=True, help="object_ae weights stem")
    parser.add_argument("--motion", help="motion model weights stem to fuse with")
    parser.add_argument("--motion-cache", help="JSON file caching the motion model's scores")
    parser.add_argument("--data", default="../shared/data/UCSDped2")
    parser.add_argument("--clips", default="", help="comma-separated held-out training "
                        "clips (default: the weights' val_clips)")
    parser.add_argument("--fusion-clips", default="", help="clips held out by both "
                        "models (default: --clips)")
    parser.add_argument("--rate", type=float, default=0.01)
    parser.add_argument("--kinds", choices=sorted(KIND_SETS), default="choice",
                        help="proxy kinds: `choice` (the eight that chose), `confirm` (the "
                        "three that only confirm), or `all`")
    parser.add_argument("--json", required=True, help="where the figures go")
    parser.add_argument("--plot", help="PNG of the AUC per kind of every candidate")
    args = parser.parse_args(argv)
    ctx = mx.cpu()
    _, meta = load_weights(args.weights, ctx)
    names = args.clips.split(",") if args.clips else meta.provenance["val_clips"]
    fusion_names = args.fusion_clips.split(",") if args.fusion_clips else names
    if any(n.lower().startswith("test") for n in [*names, *fusion_names]):
        raise SystemExit("validation reads normal training clips only, never Test clips")
    clips = _load_clips(Path(args.data), names, meta)
    kinds = KIND_SETS[args.kinds]
    a_normal, a_synth = frame_scores(args.weights, clips, ctx, kinds)
    calibrated = meta.calibration.get("thresholds", {}).get(RULE)
    by_smooth = {}
    for k in SMOOTHING:
        held = pooled(a_normal, k)
        thr = calibrated if calibrated is not None else threshold_at(held, args.rate)
        figures = kind_figures(held, a_synth, thr, k)
        figures.update(threshold=thr, held_out_false_alarm_rate=float((held >= thr).mean()))
        by_smooth[str(k)] = figures
    smooth = (int(meta.calibration["smooth"]) if calibrated is not None else
              max(SMOOTHING, key=lambda k: (by_smooth[str(k)]["mean_auc"], -k)))
    result = {"weights": str(args.weights), "clips": names, "kinds": list(kinds),
              "epochs": meta.provenance.get("epochs"),
              "threshold": "calibrated" if calibrated is not None else
                           f"{1 - args.rate:.0%} quantile of the held-out normal frames "
                           "(in-sample)",
              "smooth": smooth, "object_ae": by_smooth[str(smooth)],
              "by_smooth": by_smooth}
    if args.motion:
        keep = [names.index(n) for n in fusion_names]
        _, m_meta = load_weights(args.motion, ctx)
        m_clips = _load_clips(Path(args.data), fusion_names, m_meta)
        m_normal, m_synth = _cached_scores(args.motion, m_clips, fusion_names, ctx,
                                           args.motion_cache, kinds)
        a_part = ([a_normal[i] for i in keep], {q: [v[i] for i in keep]
                                                for q, v in a_synth.items()})
        result["fusion"] = {"clips": fusion_names, "motion_weights": str(args.motion),
                            **fusion_figures((m_normal, m_synth), a_part, args.rate)}
    Path(args.json).write_text(json.dumps(result, indent=2, default=float))
    if args.plot:
        plot_result(result, Path(args.plot))
    print(json.dumps(result["object_ae"], default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
