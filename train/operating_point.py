"""An image autoencoder's operating point: the threshold of each of its rules.

Three ways (``training.threshold_by``, ``vadstream calibrate --threshold-by``):

- ``false_alarms``: the (1 − ``false_alarm_rate``) quantile of the rule's values on the normal
  validation images, the documents' way. It flags that share of good parts at most, however
  well the rule ranks: on casting at 1 % it let a quarter of the defective parts pass at an
  AUC of 0.98.
- ``synthetic``: the threshold with the best balanced accuracy (Youden's J) between the
  normal validation images and the synthetic defects pasted onto copies of them
  (:data:`train.images.SYNTHETIC_DEFECTS`, kinds pooled): no label is used.
- ``defects``: the same between the normal and the real defective validation images: labels
  choose the threshold (as a classifier's), so the accuracy on those images is in-sample.

Balanced accuracy, not accuracy: it does not depend on how many defects the validation
split happens to hold. Both balanced ways flag at most ``false_alarm_cap`` of the normal
validation images.
"""

from __future__ import annotations

import numpy as np

from train.metrics import threshold_at

#: The ways of setting the thresholds, and what each records.
THRESHOLD_BY = {
    "false_alarms": "each rule's values on the normal validation images at the false-alarm "
                    "rate",
    "synthetic": "best balanced accuracy between the normal validation images and the "
                 "synthetic defects (no label)",
    "defects": "best balanced accuracy between the normal and the real defective validation "
               "images (labels chose the threshold)",
}


def balanced_threshold(normal: np.ndarray, defects: np.ndarray, cap: float = 1.0) -> float:
    """The threshold (``value >= threshold`` flags) with the best balanced accuracy between
    ``normal`` and ``defects`` among those that flag at most ``cap`` of ``normal``: of the
    best cuts (midway between neighbouring values, or beyond either end), the middle one.

    Args:
        normal: Rule values of normal images.
        defects: Rule values of defective ones.
        cap: Largest share of ``normal`` the threshold may flag (0..1).

    Raises:
        ValueError: If either set is empty or the cap is outside 0..1.
    """
    normal = np.sort(np.asarray(normal, np.float64))
    defects = np.sort(np.asarray(defects, np.float64))
    if not len(normal) or not len(defects):
        raise ValueError(f"a balanced threshold needs normal and defective values, got "
                         f"{len(normal)} and {len(defects)}")
    if not 0 <= cap <= 1:
        raise ValueError(f"false_alarm_cap is a share of normal images, 0..1, got {cap}")
    values = np.unique(np.r_[normal, defects])
    cuts = np.r_[values[0] - 1, (values[1:] + values[:-1]) / 2, values[-1] + 1]
    false_alarms = 1 - np.searchsorted(normal, cuts, "left") / len(normal)
    recall = 1 - np.searchsorted(defects, cuts, "left") / len(defects)
    balanced = np.where(false_alarms <= cap, (1 - false_alarms + recall) / 2, -1.0)
    best = np.flatnonzero(balanced == balanced.max())
    return float(cuts[best[len(best) // 2]])


def operating_thresholds(threshold_by: str, normal: dict[str, np.ndarray],
                         synthetic: dict[str, np.ndarray], real: dict[str, np.ndarray],
                         false_alarm_rate: float, false_alarm_cap: float) -> dict[str, float]:
    """Each rule's threshold by ``threshold_by`` (see the module).

    Args:
        threshold_by: A key of :data:`THRESHOLD_BY`.
        normal: Rule -> values of the normal validation images.
        synthetic: Rule -> values of the synthetic defects (kinds pooled).
        real: Rule -> values of the real defective validation images (may be empty).
        false_alarm_rate: The ``false_alarms`` way's rate.
        false_alarm_cap: The balanced ways' largest share of flagged normal images.

    Raises:
        ValueError: If ``threshold_by`` is unknown, or is ``defects`` without real defects.
    """
    if threshold_by not in THRESHOLD_BY:
        raise ValueError(f"threshold_by must be one of {', '.join(THRESHOLD_BY)}, got "
                         f"{threshold_by!r}")
    if threshold_by == "false_alarms":
        return {r: threshold_at(v, false_alarm_rate) for r, v in normal.items()}
    positives = synthetic if threshold_by == "synthetic" else real
    if not positives:
        raise ValueError("threshold_by defects needs defective images in the validation "
                         "split; this data set has none: use threshold_by synthetic")
    return {r: balanced_threshold(v, positives[r], false_alarm_cap) for r, v in normal.items()}


def figures_at(threshold: float, normal: np.ndarray, defects: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy, precision, recall and false-alarm rate of ``value >=
    threshold`` on normal and defective values (defect = positive)."""
    normal, defects = np.asarray(normal), np.asarray(defects)
    false_alarms, hits = int((normal >= threshold).sum()), int((defects >= threshold).sum())
    recall = hits / max(len(defects), 1)
    fa_rate = false_alarms / max(len(normal), 1)
    return {"accuracy": (len(normal) - false_alarms + hits) / max(len(normal) + len(defects), 1),
            "balanced_accuracy": (1 - fa_rate + recall) / 2,
            "precision": hits / max(hits + false_alarms, 1), "recall": recall,
            "false_alarm_rate": fa_rate}
