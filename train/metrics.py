"""Ground truth of UCSD-style test sets and frame-level metrics (scikit-learn underneath)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from sklearn.metrics import precision_recall_fscore_support, roc_auc_score, roc_curve

_ENTRY = re.compile(r"TestVideoFile\s*\{\s*end\s*\+\s*1\s*\}\s*\.\s*gt_frame\s*=\s*\[([^\]]*)\]")


def parse_gt(path: str | Path) -> dict[int, list[tuple[int, int]]]:
    """Read the official MATLAB ground truth (``UCSDped2.m``).

    Entry i (1-based) is clip ``Test<i:03d>``; each entry lists 1-based inclusive frame
    ranges (``[61:180]``, or several, ``[5:90, 140:200]``, or single frames).

    Returns:
        Clip number -> list of (first, last) frame ranges.

    Raises:
        ValueError: If the file has no ``TestVideoFile{end+1}.gt_frame`` entries.
    """
    text = Path(path).read_text()
    entries = _ENTRY.findall(text)
    if not entries:
        raise ValueError(f"{path} has no `TestVideoFile{{end+1}}.gt_frame = [...]` entries; "
                         "is it the dataset's official ground-truth file?")
    out = {}
    for i, body in enumerate(entries, start=1):
        ranges = []
        for part in re.split(r"[,;\s]+", body.strip()):
            if not part:
                continue
            first, _, last = part.partition(":")
            ranges.append((int(first), int(last or first)))
        out[i] = ranges
    return out


def frame_labels(n_frames: int, ranges: list[tuple[int, int]]) -> np.ndarray:
    """Boolean per-frame labels from 1-based inclusive ranges."""
    labels = np.zeros(n_frames, bool)
    for first, last in ranges:
        labels[max(0, first - 1):min(n_frames, last)] = True
    return labels


def normalise_per_video(scores: np.ndarray) -> np.ndarray:
    """Min-max normalise one video's scores to [0, 1] (the papers' protocol, not causal)."""
    lo, hi = np.nanmin(scores), np.nanmax(scores)
    return np.zeros_like(scores) if hi <= lo else (scores - lo) / (hi - lo)


def roc_auc_eer(labels: np.ndarray, scores: np.ndarray) -> tuple[float | None, float | None]:
    """ROC AUC and equal error rate; None for both when only one class is present."""
    labels = np.asarray(labels, bool)
    if labels.all() or not labels.any():
        return None, None
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    gap = (1 - tpr) - fpr          # falls from 1 to -1 along the curve
    i = int(np.argmax(gap <= 0))   # first point at or past FPR = FNR
    # The ROC curve is linear between its points: interpolate the crossing.
    t = gap[i - 1] / (gap[i - 1] - gap[i]) if i > 0 and gap[i] < 0 else 1.0
    eer = fpr[i - 1] + t * (fpr[i] - fpr[i - 1]) if i > 0 else fpr[0]
    return float(roc_auc_score(labels, scores)), float(eer)


def macro_auc(labels: list[np.ndarray], scores: list[np.ndarray]) -> float | None:
    """Mean of the per-clip ROC AUCs over the clips that have both classes.

    Each clip counts once whatever its length, so a long clip cannot hide a weak one.
    A per-clip AUC does not change under any increasing transform of that clip's scores,
    so the paper protocol's per-video min-max normalisation gives the same macro AUC as
    the raw scores (unless it merges distinct scores into ties).

    Args:
        labels: One boolean label array per clip.
        scores: One score array per clip, the same lengths.

    Returns:
        The mean AUC, or None when no clip has both classes.
    """
    aucs = [roc_auc_eer(y, s)[0] for y, s in zip(labels, scores, strict=True)]
    aucs = [a for a in aucs if a is not None]
    return float(np.mean(aucs)) if aucs else None


def threshold_at(values: np.ndarray, false_alarm_rate: float) -> float:
    """The lowest threshold that flags (value >= threshold) at most ``false_alarm_rate`` of
    ``values``, ties included (an integer score with many equal values cannot collapse
    to flagging everything)."""
    values = np.asarray(values)
    dtype = values.dtype if values.dtype.kind == "f" else np.dtype(np.float64)
    ordered = np.sort(values.astype(dtype))[::-1]
    k = int(np.floor(false_alarm_rate * len(ordered)))
    # Just above the (k+1)-th largest value, in the values' own precision (so it is
    # above it in float32 and float64 alike).
    return float(np.nextafter(ordered[min(k, len(ordered) - 1)], dtype.type(np.inf)))


def decision_scores(labels: np.ndarray, decisions: np.ndarray) -> dict[str, float]:
    """Precision, recall and F1 of boolean decisions."""
    p, r, f, _ = precision_recall_fscore_support(labels, decisions, average="binary",
                                                 zero_division=0)
    return {"precision": float(p), "recall": float(r), "f1": float(f)}
