"""Evaluation and calibration figures (matplotlib, written as PNG files)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first
import numpy as np  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402


def plot_roc(curves: dict[str, tuple[np.ndarray, np.ndarray, float]], path: Path,
             title: str = "frame-level ROC") -> None:
    """ROC curves: name -> (labels, scores, auc)."""
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, (labels, scores, auc) in curves.items():
        fpr, tpr, _ = roc_curve(labels, scores)
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_clip(name: str, scores: np.ndarray, labels: np.ndarray, threshold: float,
              decisions: np.ndarray, path: Path, ylabel: str) -> None:
    """One clip's causal score over time, ground truth shaded, threshold drawn."""
    fig, ax = plt.subplots(figsize=(8, 2.8))
    frames = np.arange(1, len(scores) + 1)
    ax.fill_between(frames, 0, 1, where=labels, transform=ax.get_xaxis_transform(),
                    color="tab:red", alpha=0.15, step="mid", label="ground truth anomalous")
    ax.plot(frames, scores, color="tab:blue", lw=1.2, label="score")
    ax.scatter(frames[decisions], scores[decisions], s=6, color="tab:red", zorder=3,
               label="flagged")
    ax.axhline(threshold, color="black", ls="--", lw=1, label="threshold")
    ax.set(xlabel="frame", ylabel=ylabel, title=name, xlim=(1, len(scores)))
    ax.legend(loc="upper left", fontsize=7, ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_histogram(scores: np.ndarray, threshold: float, path: Path, xlabel: str) -> None:
    """Distribution of held-out normal frame scores with the calibrated threshold."""
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist(scores, bins=60, color="tab:blue", alpha=0.8)
    ax.axvline(threshold, color="black", ls="--", label=f"threshold {threshold:.0f}")
    ax.set(xlabel=xlabel, ylabel="frames", title="held-out normal frames")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_class_histogram(values: dict[str, np.ndarray], threshold: float, path: Path,
                         xlabel: str) -> None:
    """Distributions of a score per class (validation images) with the chosen threshold."""
    fig, ax = plt.subplots(figsize=(6, 3))
    for name, v in values.items():
        ax.hist(v, bins=50, alpha=0.6, label=f"{name} ({len(v)})")
    ax.axvline(threshold, color="black", ls="--", label=f"threshold {threshold:.3g}")
    ax.set(xlabel=xlabel, ylabel="images", title="validation images", yscale="log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_heatmap_grid(rows: dict[str, list[tuple[np.ndarray, np.ndarray, str]]], path: Path,
                      title: str = "") -> None:
    """A grid of anomaly maps: one row per named group of images (e.g. "defect, missed"),
    each cell a grey image under its map in JET colours.

    Args:
        rows: Row name -> cells (grey image 0..1, map 0..1, cell title); an empty row is
            left out and named "none" in the figure's title.
        path: PNG to write.
        title: The figure's title.
    """
    shown = {name: cells for name, cells in rows.items() if cells}
    empty = [name for name, cells in rows.items() if not cells]
    columns = max((len(cells) for cells in shown.values()), default=1)
    fig, axes = plt.subplots(max(len(shown), 1), columns, squeeze=False,
                             figsize=(1.9 * columns + 0.4, 2.3 * max(len(shown), 1) + 0.6))
    for ax in axes.ravel():
        ax.axis("off")
    for r, (name, cells) in enumerate(shown.items()):
        for c, (image, heat, label) in enumerate(cells):
            ax = axes[r, c]
            ax.imshow(image, cmap="gray", vmin=0, vmax=1)
            ax.imshow(heat, cmap="jet", vmin=0, vmax=1, alpha=0.45)
            ax.set_title(f"{name}\n{label}" if c == 0 else label, fontsize=7)
    heading = title + ("\n" if title else "") + (f"none: {'; '.join(empty)}" if empty else "")
    if heading:
        fig.suptitle(heading, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_kind_aucs(rows: dict[str, dict[str, float | None]], path: Path,
                   title: str = "validation AUC per proxy kind") -> None:
    """Grouped bars: for each candidate (a row), its AUC on each proxy kind."""
    kinds = list(next(iter(rows.values())))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(kinds)), 3.6))
    width = 0.8 / len(rows)
    for i, (name, aucs) in enumerate(rows.items()):
        values = [aucs[k] if aucs[k] is not None else np.nan for k in kinds]
        ax.bar(np.arange(len(kinds)) + i * width - 0.4 + width / 2, values, width, label=name)
    ax.set_xticks(np.arange(len(kinds)), kinds, rotation=30, ha="right")
    ax.set(ylim=(0.4, 1.0), ylabel="frame AUC", title=title)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.legend(fontsize=7, ncol=min(4, len(rows)), loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
