"""Calibrate a model's motion gate (:mod:`stream.detector.gate`) on normal training clips
and store it in the weights' metadata as ``calibration["gate"]``.

Still windows are made from real training frames: a frame held for a window and a half,
with independent uniform noise of amplitude ``level / 32`` (0-255 scale) added to every
frame, so that a window's motion (the largest 4×4 sum of its frames' change) is at most
``level``. Each is scored by the real network and the weights' own scorer, as live. The
bound is the largest measured motion of the noise levels at which every still window
scored at most ``threshold − margin·|threshold|``, capped at half the quietest motion of
any window of the normal clips themselves (there, someone always walks: such motion is
never still). The gated score is the largest rule value any still window within the bound
reached.

Usage: ``python -m train.gate WEIGHTS TRAIN_FOLDER [--write]``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import mxnet as mx
import numpy as np

from models.registry import get_family
from models.scoring import ScorerConfig
from models.weights import load_calibration_arrays, load_weights, weights_paths
from stream.capture.frames import load_clip
from stream.detector.gate import window_motion
from train.offline import score_clip

#: Noise levels tried (the largest 4×4 sum of change they allow, 0-255 scale).
LEVELS = (0.0, 8.0, 16.0, 32.0, 64.0, 96.0, 128.0, 192.0, 256.0)
#: Share of |threshold| a still window's score must stay below the threshold by.
MARGIN = 0.5


def clip_motions(x: np.ndarray, window: int, pixel_scale: float) -> np.ndarray:
    """Every window's motion in a clip (windows starting at each frame)."""
    return np.array([window_motion(x[s:s + window], pixel_scale)
                     for s in range(len(x) - window + 1)])


def calibrate(weights: str | Path, clips: list[Path], bases: int = 2, seed: int = 0) -> dict:
    """The gate of ``weights`` from normal ``clips`` (see the module docstring).

    Args:
        weights: Weights stem.
        clips: Normal training clip folders.
        bases: Frames of each clip held still (evenly spaced).
        seed: Of the noise.

    Returns:
        ``calibration["gate"]``: ``bound``, ``score`` and how they were derived.

    Raises:
        ValueError: If even a noiseless still window scores within the margin.
    """
    net, meta = load_weights(weights, mx.cpu())
    family = get_family(meta.model)
    scorer = family.scorer(meta, load_calibration_arrays(weights, meta), ScorerConfig())
    window, scale = meta.window, meta.contract.pixel_scale
    limit = scorer.threshold - MARGIN * abs(scorer.threshold)
    rng = np.random.default_rng(seed)
    still: list[tuple[float, float]] = []   # (motion, highest score) per still clip
    quietest = np.inf
    for folder in clips:
        x = load_clip(folder, meta.contract)
        quietest = min(quietest, float(clip_motions(x, window, scale).min()))
        for index in np.linspace(0, len(x) - 1, bases).astype(int):
            for level in LEVELS:
                a = level / 32 / scale
                held = x[index] + rng.uniform(-a, a, (window + window // 2, *x.shape[1:]))
                held = held.astype(np.float32)
                scores = score_clip(net, held, window, 1, scorer, mx.cpu())["score"]
                still.append((float(clip_motions(held, window, scale).max()),
                              float(np.nanmax(scores))))
    motions, scores = np.array(still).T
    failing = motions[scores > limit]
    passing = motions[motions < (failing.min() if len(failing) else np.inf)]
    if not len(passing):
        raise ValueError(f"{weights}: a still window scores above {limit:g} (the threshold "
                         f"{scorer.threshold:g} less its margin): no gate")
    bound = min(float(passing.max()), quietest / 2)
    return {"bound": round(bound, 3), "score": float(scores[motions <= bound].max()),
            "rule": scorer.rule, "threshold": scorer.threshold, "margin": MARGIN,
            "still_windows": int(len(still)), "clips": [f.name for f in clips],
            "quietest_normal_motion": quietest,
            "method": "largest motion (4x4 sum of frame change, 0-255) of still training "
                      "frames with noise at which every still window scored at most "
                      "threshold - margin*|threshold|, capped at half the quietest motion "
                      "of the normal clips; score: the highest still score within it"}


def main(argv: list[str] | None = None) -> None:
    """``python -m train.gate WEIGHTS TRAIN_FOLDER [--write]``."""
    parser = argparse.ArgumentParser(prog="python -m train.gate", description=__doc__)
    parser.add_argument("weights")
    parser.add_argument("train", help="folder of normal training clip folders")
    parser.add_argument("--write", action="store_true",
                        help="store the gate in the weights' metadata")
    args = parser.parse_args(argv)
    clips = sorted(p for p in Path(args.train).iterdir() if p.is_dir())
    gate = calibrate(args.weights, clips)
    print(json.dumps(gate, indent=2))
    if args.write:
        path = weights_paths(args.weights)[1]
        meta = json.loads(path.read_text())
        meta["calibration"]["gate"] = gate
        path.write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main()
