"""``vadstream evaluate`` on a class-folder image set (``ok_front``/``def_front``): each
image scored by the weights' own scorer at its calibrated threshold, against its class
(normal 0, defect 1)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import mxnet as mx
import numpy as np

from models.registry import get_family
from models.scoring import ScorerConfig
from models.weights import load_calibration_arrays, load_weights
from train.images import ImageSet, load_image_set, recorded_split, score_images
from train.metrics import decision_scores, roc_auc_eer

log = logging.getLogger(__name__)

#: Heat-map grid rows: (name, label, flagged) of the images each shows.
HEATMAP_ROWS = (("defect, flagged", 1, True), ("defect, missed", 1, False),
                ("normal, passed", 0, False), ("normal, flagged", 0, True))
#: Images per heat-map row at most.
HEATMAP_COLUMNS = 6


@dataclass
class ImageDetails:
    """What the plots need beside the JSON result.

    Attributes:
        labels: (N,) 0 normal, 1 defect.
        ranking: (N,) the values the ROC curve ranks (see :func:`evaluate_images`).
        heatmaps: Row name -> cells (grey image 0..1, anomaly map 0..1, title), in the
            order of :data:`HEATMAP_ROWS` (empty rows included).
    """

    labels: np.ndarray
    ranking: np.ndarray
    heatmaps: dict[str, list[tuple[np.ndarray, np.ndarray, str]]] = field(default_factory=dict)


def evaluate_images(weights: str | Path, data: str | Path, normal: str | None = None,
                    ctx: mx.Context | None = None, batch_size: int = 32, split: str = "all"
                    ) -> tuple[dict, ImageDetails]:
    """Score every image of every class folder of ``data`` and compare with its class.

    The decisions are the scorer's own (``anomalous``: its calibrated rule and threshold);
    the AUC ranks the score (a classifier's logit margin, which orders images as its
    probability does without the ties where the probability rounds to 1).

    Args:
        weights: Weights of a one-image family (``cam``, ``ssim_ae``, ``frame_cae``).
        data: Folder with one subfolder of images per class.
        normal: The normal class folder (None: recognised by name, e.g. ``ok_front``).
        ctx: MXNet context (default CPU).
        batch_size: Images per forward pass.
        split: ``all`` the images of ``data``; ``val`` only the validation images of the
            split the weights were trained with (``data`` must be their training folder):
            a figure on images no training step and no threshold choice saw but for the
            classifier's threshold, which is chosen on them.

    Returns:
        The results (the ``--json`` content: ``image_auc``, ``accuracy``, ``precision``,
        ``recall``, ``f1``, ``threshold``, ``counts``, ``model``, ``weights``, ``rule``,
        ``data``, ``images``) and the details for the plots.

    Raises:
        ValueError: If the weights score windows of more than one frame, or the normal
            class folder is unclear.
        FileNotFoundError: If ``data`` has no class folders of images.
    """
    ctx = ctx or mx.cpu()
    net, meta = load_weights(weights, ctx)
    family = get_family(meta.model)
    if meta.window != 1:
        raise ValueError(f"{weights} is a {meta.model} that scores windows of {meta.window} "
                         "frames; images are evaluated with a one-image model (cam, ssim_ae, "
                         "frame_cae), and video with a UCSD-style root as --data")
    form = family.inference(net, meta, ctx)[1]
    form.hybridize()
    scorer = family.scorer(meta, load_calibration_arrays(weights, meta), ScorerConfig())
    recorded = meta.provenance.get("split") or {}
    limit = recorded.get("limit") if split == "val" else None
    images = load_image_set(data, meta.contract, normal, limit=limit,
                            seed=int(recorded.get("seed", 0)))
    if split == "val":
        images = images.subset(_validation_index(meta, images, data))
    elif split != "all":
        raise ValueError(f"split must be 'all' or 'val', got {split!r}")
    s = score_images(form, scorer, images.images, ctx, batch_size=batch_size)
    labels = images.labels.astype(bool)
    flagged = s["anomalous"]
    ranking = s["error"] if scorer.rule == "probability" else s["score"]
    auc, _ = roc_auc_eer(labels, ranking)
    classes = np.array(images.class_of)
    counts = {name: {"images": int((classes == name).sum()),
                     "label": "defect" if label else "normal",
                     "flagged": int(flagged[classes == name].sum())}
              for name, label in images.classes.items()}
    result = {"model": meta.model, "weights": str(weights), "data": str(data),
              "rule": scorer.rule, "threshold": float(scorer.threshold),
              "images": len(images), "split": split, "image_auc": auc,
              "accuracy": float((flagged == labels).mean()),
              **decision_scores(labels, flagged), "counts": counts}
    log.info("%s on %s: %s", weights, data, {k: v for k, v in result.items() if k != "counts"})
    details = ImageDetails(images.labels, ranking,
                           _heatmaps(form, scorer, images, s["score"], flagged, ctx))
    return result, details


def _validation_index(meta, images: ImageSet, data: str | Path) -> np.ndarray:
    """The validation images of the split recorded in the weights' provenance."""
    return recorded_split(meta.provenance, images, data, "use --split all")[1]


def _heatmaps(form, scorer, images: ImageSet, scores: np.ndarray, flagged: np.ndarray,
              ctx: mx.Context) -> dict[str, list[tuple[np.ndarray, np.ndarray, str]]]:
    """Up to :data:`HEATMAP_COLUMNS` images per row of :data:`HEATMAP_ROWS`: the mistakes
    the surest first (missed defects by lowest score, false alarms by highest), the
    correct ones spread over their range of scores. Their maps are scored again here, so
    that a whole data set's maps are never held."""
    rows = {}
    for name, label, is_flagged in HEATMAP_ROWS:
        index = np.flatnonzero((images.labels == label) & (flagged == is_flagged))
        index = index[np.argsort(scores[index], kind="stable")]
        if name == "normal, flagged":
            index = index[::-1]
        if name in ("defect, missed", "normal, flagged"):
            index = index[:HEATMAP_COLUMNS]
        elif len(index) > HEATMAP_COLUMNS:
            index = index[np.linspace(0, len(index) - 1, HEATMAP_COLUMNS).round().astype(int)]
        rows[name] = index
    chosen = np.concatenate(list(rows.values())).astype(int)
    maps = (score_images(form, scorer, images.images[chosen], ctx, maps=True)["map"]
            if len(chosen) else np.empty((0, *images.images.shape[1:]), np.float32))
    by_image = dict(zip(chosen.tolist(), maps, strict=True))
    out: dict[str, list[tuple[np.ndarray, np.ndarray, str]]] = {}
    for name, index in rows.items():
        out[name] = [(_unit(images.images[i]), _unit(by_image[i]),
                      f"{images.paths[i].parent.name} {scores[i]:.3g}") for i in index]
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    """``x`` scaled to its own range, 0..1 (all zeros when flat): model units and an
    autoencoder's dissimilarity alike become a picture."""
    x = np.asarray(x, np.float32)
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def format_image_table(result: dict) -> str:
    """Per class folder: its images and how many were flagged; then the totals."""
    def f(v):
        return "   -  " if v is None else f"{v:6.3f}"
    lines = [f"{'class':16} {'label':6} {'images':>6} {'flagged':>7} {'share':>6}"]
    for name, c in result["counts"].items():
        share = c["flagged"] / c["images"] if c["images"] else None
        lines.append(f"{name[:16]:16} {c['label']:6} {c['images']:6d} {c['flagged']:7d} "
                     f"{f(share)}")
    lines.append(f"image AUC {f(result['image_auc'])}, accuracy {f(result['accuracy'])}, "
                 f"precision {f(result['precision'])}, recall {f(result['recall'])}, "
                 f"F1 {f(result['f1'])} (defect = positive)")
    lines.append(f"{result['model']} {result['weights']}: rule {result['rule']}, threshold "
                 f"{result['threshold']:.4g}, {result['images']} images")
    return "\n".join(lines)


def write_image_outputs(result: dict, details: ImageDetails, json_path: Path | None,
                        plots: Path | None) -> None:
    """``--json``, and ``--plots``: ``roc.png`` and ``heatmaps.png``."""
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2) + "\n")
    if plots is not None:
        from train.plots import plot_heatmap_grid, plot_roc

        plots.mkdir(parents=True, exist_ok=True)
        if result["image_auc"] is not None:
            plot_roc({result["rule"]: (details.labels, details.ranking, result["image_auc"])},
                     plots / "roc.png", title="image-level ROC (defect = positive)")
        what = ("map: the predicted class's activation (a missed defect shows the normal "
                "class's)" if result["rule"] == "probability" else
                f"map: the {result['rule']} rule's, scaled to each image's range")
        plot_heatmap_grid(details.heatmaps, plots / "heatmaps.png",
                          title=f"{Path(str(result['weights'])).name} on "
                                f"{Path(str(result['data'])).name}; {what}")
