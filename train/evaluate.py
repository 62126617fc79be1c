"""``vadstream evaluate``: frame- and pixel-level results on a UCSD-style test set."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import mxnet as mx
import numpy as np
from sklearn.metrics import roc_auc_score

from models.registry import get_family
from models.scoring import RULES, TOP_SHARE, ScorerConfig
from models.weights import load_calibration_arrays, load_weights
from stream.capture.frames import list_frames, resolve_clips
from stream.defaults import STRIDE
from stream.detector.annotate import find_boxes
from stream.detector.engine import Engine
from stream.detector.events import EventConfig, EventTracker, FrameVerdict
from train.baseline import frame_difference_scores
from train.data import load_clip
from train.metrics import (
    decision_scores,
    frame_labels,
    macro_auc,
    normalise_per_video,
    parse_gt,
    roc_auc_eer,
)
from train.offline import score_clip

log = logging.getLogger(__name__)
#: Pixel-level AUC uses every PIXEL_STEP-th row and column of the 227×227 maps.
PIXEL_STEP = 2


@dataclass
class ClipResult:
    """Per-clip scores and labels (``baseline``: the no-model frame-difference score)."""

    name: str
    labels: np.ndarray
    scores: np.ndarray
    decisions: np.ndarray
    values: dict[str, np.ndarray]
    baseline: np.ndarray
    row: dict = field(default_factory=dict)


def find_gt_file(test_dir: Path) -> Path:
    """The ``.m`` ground-truth file of a test split folder."""
    files = sorted(test_dir.glob("*.m"))
    if not files:
        raise FileNotFoundError(f"no ground-truth .m file in {test_dir}; evaluation needs the "
                                "dataset's official UCSDped2.m (or UCSDped1.m)")
    return files[0]


def _load_masks(folder: Path, size: int) -> np.ndarray | None:
    paths = list_frames(folder) if folder.is_dir() else []
    if not paths:
        return None
    masks = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in paths]
    return np.stack([cv2.resize(m, (size, size), interpolation=cv2.INTER_NEAREST) > 127
                     for m in masks])


def _box_hits(maps: np.ndarray, masks: np.ndarray, decisions: np.ndarray,
              map_threshold: float) -> tuple[int, int]:
    """Among frames with anomalous ground-truth pixels: how many the detector flagged with
    a box that overlaps those pixels."""
    hits = total = 0
    for s, m, flagged in zip(maps, masks, decisions, strict=True):
        if not m.any():
            continue
        total += 1
        if flagged and any(m[y:y + h, x:x + w].any()
                           for x, y, w, h in find_boxes(s > map_threshold, m.shape)):
            hits += 1
    return hits, total


def clip_events(decisions: np.ndarray, scores: np.ndarray,
                config: EventConfig | None = None) -> list[tuple[int, int]]:
    """The events the live detector's tracker raises on one clip's verdicts, as 0-based
    inclusive (first, last) frame ranges (an event still open at the clip's end closes
    there, as at the end of a stream)."""
    config = config or EventConfig()
    tracker = EventTracker("clip", 0.0, config.open_frames, config.close_frames, 0)
    events = []
    for i, (anomalous, score) in enumerate(zip(decisions, scores, strict=True)):
        for alert in tracker.update(FrameVerdict(i, float(i), bool(anomalous), float(score),
                                                 [])):
            if alert["type"] == "end":
                events.append((alert["start_seq"], alert["end_seq"]))
    end = tracker.close()
    if end is not None:
        events.append((end["start_seq"], end["end_seq"]))
    return events


def event_counts(intervals: list[tuple[int, int]], events: list[tuple[int, int]]) -> dict:
    """How events meet ground-truth intervals (1-based inclusive, as the ``.m`` file gives
    them): intervals with an event overlapping them, and events that overlap none."""
    spans = [(first - 1, last - 1) for first, last in intervals]

    def overlaps(a, b):
        return a[0] <= b[1] and b[0] <= a[1]
    return {"intervals": len(spans),
            "intervals_with_event": sum(any(overlaps(i, e) for e in events) for i in spans),
            "events": len(events),
            "events_outside": sum(not any(overlaps(e, i) for i in spans) for e in events)}


def fill_unscored(values: np.ndarray) -> np.ndarray:
    """A clip's frame values with those of frames no window scored (a predictor's first
    T frames: live they are never scored, so never flagged) set to the clip's lowest
    scored value; all NaN stays NaN (the value does not exist for these weights)."""
    values = np.asarray(values, np.float64)
    missing = np.isnan(values)
    if missing.any() and not missing.all():
        values = values.copy()
        values[missing] = np.nanmin(values)
    return values


def pooled_aucs(labels: list[np.ndarray], scores: list[np.ndarray]
                ) -> tuple[tuple[float | None, float | None], tuple[float | None, float | None]]:
    """(AUC, EER) over all clips' frames under the ``paper`` protocol (each clip's scores
    min-max normalised first) and the ``online`` one (raw, causal scores)."""
    y = np.concatenate(labels)
    paper = np.concatenate([normalise_per_video(s) for s in scores])
    return roc_auc_eer(y, paper), roc_auc_eer(y, np.concatenate(scores))


def protocol_aucs(labels: list[np.ndarray], scores: list[np.ndarray]) -> dict[str, float | None]:
    """Frame AUCs of one score under both protocols: pooled over all frames (with the
    EERs) and the macro mean of per-clip AUCs (:func:`train.metrics.macro_auc`)."""
    (auc_paper, eer_paper), (auc_online, eer_online) = pooled_aucs(labels, scores)
    return {"frame_auc_paper": auc_paper, "frame_auc_online": auc_online,
            "eer_paper": eer_paper, "eer_online": eer_online,
            "frame_auc_paper_macro": macro_auc(labels, [normalise_per_video(s) for s in scores]),
            "frame_auc_online_macro": macro_auc(labels, scores)}


def evaluate(model: str | Path, data: str | Path, stride: int | None = None,
             ctx: mx.Context | None = None, scorer: ScorerConfig | None = None,
             precision: str | None = None, int8_calibration: str = "",
             backend: str = "mxnet") -> tuple[dict, list[ClipResult]]:
    """Score every test clip that is present and compare with the ground truth.

    Args:
        model: Weights.
        data: Dataset root (``.../UCSDped2``) or its ``Test/`` folder.
        stride: Detector stride (default: the one the weights were calibrated for).
        ctx: MXNet context.
        scorer: Scoring rule (default: ``auto``, the weights' calibration).
        precision: None: the training network as it is; ``fp32``, ``int8``, ``bf16`` or
            ``auto``: the live detector's network (:class:`stream.detector.engine.Engine`) at it.
        int8_calibration: Normal clips for int8 calibration ("" : the weights' own).
        backend: The engine's backend (:data:`stream.defaults.BACKENDS`); other
            than ``mxnet``, ``precision`` None means ``fp32``.

    Beside the model it scores the no-model baseline
    (:func:`train.baseline.frame_difference_scores`) on the same preprocessed frames under
    the same protocols (the ``baseline_`` keys): what the network adds over plain motion.

    Returns:
        The results (the ``--json`` content) and per-clip details for plots.
    """
    ctx = ctx or mx.cpu()
    if precision is None and backend != "mxnet":
        precision = "fp32"
    if precision is None:
        net, meta = load_weights(model, ctx)
        net.hybridize(static_alloc=True)
    else:
        engine = Engine(model, ctx.device_type, precision, max_batch=4,
                        int8_calibration=int8_calibration, backend=backend)
        net, meta = engine.net, engine.meta
    family = get_family(meta.model)
    sc = family.scorer(meta, load_calibration_arrays(model, meta), scorer or ScorerConfig())
    try:
        family.check_rule(meta, sc.rule)
    except ValueError as err:
        raise ValueError(f"{model}: {err}") from None
    # As live: at most the frames one window of the model scores.
    stride = min(stride or int(meta.calibration.get("stride", STRIDE)),
                 family.temporal(meta).scorable)
    clips = resolve_clips(data, split="Test")
    gt = parse_gt(find_gt_file(clips[0].parent))
    results, pixel_scores, pixel_labels = [], [], []
    hits = with_masks = 0
    for clip in clips:
        number = re.search(r"(\d+)$", clip.name)
        if number is None or int(number.group(1)) not in gt:
            log.warning("skipping %s: no ground-truth entry for it", clip.name)
            continue
        frames = load_clip(clip, meta.contract)
        masks = _load_masks(clip.parent / f"{clip.name}_gt", meta.contract.size)
        s = score_clip(net, frames, meta.window, stride, sc, ctx, maps=masks is not None)
        labels = frame_labels(len(frames), gt[int(number.group(1))])
        r = ClipResult(clip.name, labels, fill_unscored(s["score"]), s["anomalous"],
                       {rule: fill_unscored(s[rule] if rule in s else s["score"])
                        for rule in (*RULES, *family.rules(meta))
                        if rule in s or rule == sc.rule},
                       frame_difference_scores(frames, meta.contract.pixel_scale))
        if masks is not None and len(masks) == len(frames):
            step = slice(None, None, PIXEL_STEP)
            pixel_scores.append(s["map"][:, step, step].ravel())
            pixel_labels.append(masks[:, step, step].ravel())
            h, t = _box_hits(s["map"], masks, s["anomalous"], sc.map_threshold)
            hits, with_masks = hits + h, with_masks + t
        events = event_counts(gt[int(number.group(1))], clip_events(r.decisions, r.scores))
        auc_paper, _ = roc_auc_eer(labels, normalise_per_video(r.scores))
        auc_online, _ = roc_auc_eer(labels, r.scores)
        r.row = {"clip": clip.name, "frames": len(frames), "anomalous": int(labels.sum()),
                 "flagged": int(r.decisions.sum()), "auc_paper": auc_paper,
                 "auc_online": auc_online,
                 "baseline_auc_paper": roc_auc_eer(labels, normalise_per_video(r.baseline))[0],
                 "baseline_auc_online": roc_auc_eer(labels, r.baseline)[0],
                 **decision_scores(labels, r.decisions), **events}
        log.info("%s: %s", clip.name, r.row)
        results.append(r)
    if not results:
        raise ValueError(f"no test clip in {data} has a ground-truth entry")
    labels = np.concatenate([r.labels for r in results])
    every_rule = {}
    for rule in family.rules(meta):  # for comparison only: calibration chose the rule
        if any(rule not in r.values or np.isnan(r.values[rule]).any() for r in results):
            continue      # not computable for these weights (relative: no spread map)
        paper, online = pooled_aucs([r.labels for r in results],
                                    [r.values[rule] for r in results])
        every_rule[rule] = {"frame_auc_paper": paper[0], "frame_auc_online": online[0]}
    aucs = protocol_aucs([r.labels for r in results], [r.scores for r in results])
    baseline = protocol_aucs([r.labels for r in results], [r.baseline for r in results])
    decisions = decision_scores(labels, np.concatenate([r.decisions for r in results]))
    pixel_auc = None
    if pixel_scores:
        pl, ps = np.concatenate(pixel_labels), np.concatenate(pixel_scores)
        pixel_auc = float(roc_auc_score(pl, ps)) if pl.any() and not pl.all() else None
    out = {"model": str(model), "data": str(data), "stride": stride, "precision": precision,
           "backend": backend,
           "rule": sc.rule,
           "threshold": sc.threshold, "frames": int(len(labels)),
           **aucs,
           **{f"baseline_{key}": value for key, value in baseline.items()},
           "f1_online": decisions["f1"], "precision_online": decisions["precision"],
           "recall_online": decisions["recall"],
           "events": {key: sum(r.row[key] for r in results)
                      for key in ("intervals", "intervals_with_event", "events",
                                  "events_outside")},
           "rules": every_rule,
           "pixel_auc": pixel_auc,
           "box_hit_rate": hits / with_masks if with_masks else None,
           "clips": [r.row for r in results]}
    return out, results


def format_table(result: dict) -> str:
    """The per-clip table and the totals, for the terminal (``BLpap``/``BLon``: the
    no-model frame-difference baseline's AUCs)."""
    def f(v):
        return "   -  " if v is None else f"{v:6.3f}"
    lines = [f"{'clip':10} {'frames':>6} {'anom':>5} {'flag':>5} {'AUCpap':>6} {'AUCon':>6} "
             f"{'F1':>6} {'BLpap':>6} {'BLon':>6}"]
    for row in result["clips"]:
        lines.append(f"{row['clip']:10} {row['frames']:6d} {row['anomalous']:5d} "
                     f"{row['flagged']:5d} {f(row['auc_paper'])} {f(row['auc_online'])} "
                     f"{f(row['f1'])} {f(row['baseline_auc_paper'])} "
                     f"{f(row['baseline_auc_online'])}")
    lines.append(f"{'all':10} {result['frames']:6d} {'':5} {'':5} "
                 f"{f(result['frame_auc_paper'])} {f(result['frame_auc_online'])} "
                 f"{f(result['f1_online'])} {f(result['baseline_frame_auc_paper'])} "
                 f"{f(result['baseline_frame_auc_online'])}")
    lines.append(f"{'macro':10} {'':6} {'':5} {'':5} "
                 f"{f(result['frame_auc_paper_macro'])} {f(result['frame_auc_online_macro'])} "
                 f"{'':6} {f(result['baseline_frame_auc_paper_macro'])} "
                 f"{f(result['baseline_frame_auc_online_macro'])}")
    lines.append(f"live decisions: precision {f(result['precision_online'])}, recall "
                 f"{f(result['recall_online'])}, F1 {f(result['f1_online'])}")
    ev = result["events"]
    lines.append(f"events (live tracker): {ev['intervals_with_event']} of {ev['intervals']} "
                 f"anomalous intervals raise one; {ev['events']} events, "
                 f"{ev['events_outside']} outside every interval")
    lines.append(f"EER paper {f(result['eer_paper'])}, online {f(result['eer_online'])}; "
                 f"pixel AUC {f(result['pixel_auc'])}; box hit rate "
                 f"{f(result['box_hit_rate'])}; rule {result['rule']} threshold "
                 f"{result['threshold']:.1f}")
    lines.append(f"BL: no model, the top {TOP_SHARE:.0%} of the 4x4 sums of |x_t - x_t-1| "
                 f"(EER paper {f(result['baseline_eer_paper'])}, "
                 f"online {f(result['baseline_eer_online'])})")
    return "\n".join(lines)


def write_outputs(result: dict, clips: list[ClipResult], json_path: Path | None,
                  plots: Path | None) -> None:
    """``--json`` and ``--plots``."""
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2) + "\n")
    if plots is not None:
        from train.plots import plot_clip, plot_roc

        plots.mkdir(parents=True, exist_ok=True)
        labels = np.concatenate([c.labels for c in clips])
        curves = {}
        for name, key, values in (
                ("paper (per-video normalised)", "frame_auc_paper",
                 np.concatenate([normalise_per_video(c.scores) for c in clips])),
                ("online (causal)", "frame_auc_online", np.concatenate([c.scores for c in clips]))):
            if result[key] is not None:
                curves[name] = (labels, values, result[key])
        if curves:
            plot_roc(curves, plots / "roc.png")
        for c in clips:
            plot_clip(c.name, c.scores, c.labels, result["threshold"], c.decisions,
                      plots / f"{c.name}.png", ylabel=f"{result['rule']} score")
